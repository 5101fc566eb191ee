//! `deny_imports`: a plugin whose language runtime imports `wasi:sockets`
//! loads only when its manifest entry opts in, and then every socket
//! operation fails with the interface's own access-denied error. Without
//! the opt-in, or for interfaces it does not name, loading stays refused.

use portcullis::{CallContext, Error, Host, PluginConfig};
use portcullis_tests::{plugin_path, plugin_sha};

async fn load(config: PluginConfig) -> Result<Host, Error> {
    Host::builder().plugin(config).build().await
}

fn sockets() -> PluginConfig {
    PluginConfig::new("sockets", plugin_path("sockets")).sha256(plugin_sha("sockets"))
}

#[tokio::test]
async fn a_plugin_opted_into_deny_imports_loads_and_opening_a_socket_is_access_denied() {
    let host = load(sockets().deny_import("wasi:sockets/*"))
        .await
        .expect("loads with the opt-in");
    let err = host
        .call("sockets.connect", "{}", &CallContext::new())
        .await
        .expect_err("no socket opens");
    match err {
        // std maps `error-code.access-denied` to `PermissionDenied`.
        Error::Tool { error, .. } => {
            let text = error.to_string().to_lowercase();
            assert!(
                text.contains("permission denied") || text.contains("access denied"),
                "{text}"
            );
        }
        other => panic!("expected the tool's own error, got {other:?}"),
    }
}

#[tokio::test]
async fn deny_imports_for_one_interface_leaves_the_others_refused() {
    match load(sockets().deny_import("wasi:sockets/tcp")).await {
        Err(Error::ForbiddenImports { imports, .. }) => {
            assert!(!imports.is_empty());
            assert!(
                imports.iter().all(|i| !i.starts_with("wasi:sockets/tcp@")),
                "{imports:?}"
            );
        }
        other => panic!("expected forbidden imports, got {other:?}"),
    }
}

#[tokio::test]
async fn deny_imports_cannot_name_an_interface_other_than_sockets() {
    let err = load(sockets().deny_import("wasi:http/*"))
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("cannot be linked deny-everything"),
        "{err}"
    );
}
