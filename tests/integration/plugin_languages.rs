//! The bundled Python (`textstats`, componentize-py) and JavaScript
//! (`webjson`, componentize-js) plugins, built by `plugins/build.sh`
//! against the WIT without the Rust SDK, each doing its real job through
//! the host. Loading one compiles a 12-18 MB component, so each test loads
//! its plugin once.

use portcullis::manifest::{HttpTable, InjectEntry};
use portcullis::{CallContext, Error, Host, PluginConfig, SecretConfig};
use portcullis_tests::Allowed;
use portcullis_tests::net::{TOKEN, destination};
use portcullis_tests::{plugin_path, plugin_sha, repo_root};
use serde_json::{Value, json};

async fn call(host: &Host, tool: &str, args: Value) -> Result<Value, Error> {
    host.call(tool, &args.to_string(), &CallContext::new())
        .await
        .map(|out| out.value)
}

#[tokio::test]
async fn python_textstats_counts_a_granted_folder_and_reports_typed_errors() {
    let host = Host::builder()
        .plugin(
            PluginConfig::new("textstats", plugin_path("textstats"))
                .sha256(plugin_sha("textstats"))
                .dir(
                    repo_root().join("plugins/textstats/sample"),
                    "/sample",
                    portcullis::DirMode::ReadOnly,
                )
                .deny_import("wasi:sockets/*"),
        )
        .build()
        .await
        .expect("the Python plugin loads with deny_imports");

    let poem = call(
        &host,
        "textstats.file_stats",
        json!({"path": "/sample/poem.txt", "top": 1}),
    )
    .await
    .expect("stats");
    assert_eq!(poem["lines"], 7);
    assert_eq!(poem["words"], 21);
    assert_eq!(poem["top_words"], json!([{"word": "on", "count": 3}]));

    let folder = call(&host, "textstats.folder_stats", json!({"path": "/sample"}))
        .await
        .expect("folder stats");
    assert_eq!(folder["total_words"], 43, "{folder}");

    match call(
        &host,
        "textstats.file_stats",
        json!({"path": "/sample/missing.txt"}),
    )
    .await
    {
        Err(Error::Tool { error, .. }) => {
            assert!(
                matches!(error, portcullis::ToolError::NotFound(_)),
                "{error:?}"
            );
        }
        other => panic!("expected not-found, got {other:?}"),
    }
    // Outside the grant there is nothing to read.
    assert!(
        call(
            &host,
            "textstats.file_stats",
            json!({"path": "/etc/passwd"})
        )
        .await
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_webjson_fetches_through_the_gate_with_the_host_attached_secret() {
    let server = Allowed::start().await;
    let base = format!("http://127.0.0.1:{}", server.port());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("api.secret");
    std::fs::write(&file, TOKEN).expect("write secret");
    let host = Host::builder()
        .secret(
            SecretConfig::file("api", &file)
                .destination(destination(format!("{base}/echo"), &["GET"]))
                .inject(InjectEntry::header("Authorization", "Bearer {}")),
        )
        .plugin(
            PluginConfig::new("webjson", plugin_path("webjson"))
                .sha256(plugin_sha("webjson"))
                .http(HttpTable::new(base.clone()).allow_private(true))
                .secret("api"),
        )
        .build()
        .await
        .expect("the JavaScript plugin loads with an HTTP grant");

    let out = call(
        &host,
        "webjson.get_json",
        json!({"url": format!("{base}/echo"), "pointer": "/method"}),
    )
    .await
    .expect("fetched");
    assert_eq!(out, json!({"status": 200, "value": "GET"}));
    // The host attached the secret on the way out; the plugin never held it.
    assert!(
        server
            .heads()
            .iter()
            .any(|h| h.contains(&format!("Bearer {TOKEN}"))),
        "{:?}",
        server.heads()
    );

    // A destination outside the allowlist never leaves the host.
    let hits = server.hits();
    let denied = call(
        &host,
        "webjson.get_json",
        json!({"url": "http://example.com/"}),
    )
    .await;
    assert!(
        matches!(
            &denied,
            Err(Error::Tool {
                error: portcullis::ToolError::Denied(_),
                ..
            })
        ),
        "{denied:?}"
    );
    assert_eq!(server.hits(), hits);
}

#[tokio::test]
async fn the_python_plugin_without_deny_imports_is_refused_at_load() {
    let err = Host::builder()
        .plugin(
            PluginConfig::new("textstats", plugin_path("textstats"))
                .sha256(plugin_sha("textstats")),
        )
        .build()
        .await
        .expect_err("refused");
    match err {
        Error::ForbiddenImports { imports, .. } => {
            assert!(
                imports.iter().all(|i| i.starts_with("wasi:sockets/")),
                "{imports:?}"
            );
        }
        other => panic!("expected forbidden imports, got {other:?}"),
    }
}
