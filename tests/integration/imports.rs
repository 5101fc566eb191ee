//! Linking fails closed: a component importing anything the host does not
//! grant (sockets, http, an unknown interface) is refused when it loads,
//! with the list of offending imports. Nothing is stubbed.

use portcullis::{Error, Host, PluginConfig, sha256_hex};
use portcullis_tests::{plugin_path, plugin_sha};

async fn load(path: &std::path::Path, sha: String) -> Result<Host, Error> {
    Host::builder()
        .plugin(PluginConfig::new("suspect", path).sha256(sha))
        .build()
        .await
}

async fn load_wat(wat: &str) -> Result<Host, Error> {
    let bytes = wat::parse_str(wat).expect("valid WAT");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("suspect.wasm");
    std::fs::write(&path, &bytes).expect("write");
    load(&path, sha256_hex(&bytes)).await
}

fn forbidden(result: Result<Host, Error>) -> Vec<String> {
    match result {
        Err(Error::ForbiddenImports { imports, .. }) => imports,
        other => panic!("expected forbidden imports, got {other:?}"),
    }
}

#[tokio::test]
async fn sockets_import_is_refused_at_load_with_the_offending_imports() {
    let err = load(&plugin_path("sockets"), plugin_sha("sockets")).await;
    let imports = forbidden(err);
    assert!(!imports.is_empty());
    assert!(
        imports.iter().all(|i| i.starts_with("wasi:sockets/")),
        "only the sockets imports are offending: {imports:?}"
    );
    assert!(
        imports.iter().any(|i| i.starts_with("wasi:sockets/tcp")),
        "{imports:?}"
    );
}

#[tokio::test]
async fn http_import_is_refused_at_load() {
    let imports = forbidden(
        load_wat(
            r#"(component
                 (import "wasi:http/outgoing-handler@0.2.6" (instance (export "f" (func)))))"#,
        )
        .await,
    );
    assert_eq!(imports, ["wasi:http/outgoing-handler@0.2.6"]);
}

#[tokio::test]
async fn unknown_import_is_refused_at_load() {
    let imports = forbidden(
        load_wat(
            r#"(component
                 (import "evil:backdoor/steal@1.0.0" (instance (export "f" (func))))
                 (import "wasi:cli/environment@0.2.6" (instance)))"#,
        )
        .await,
    );
    assert_eq!(imports, ["evil:backdoor/steal@1.0.0"]);
}

#[tokio::test]
async fn component_without_the_tool_world_is_refused() {
    match load_wat("(component)").await {
        Err(e @ Error::InvalidPlugin { .. }) => assert!(e.hint().is_some()),
        other => panic!("expected an invalid plugin, got {other:?}"),
    }
}
