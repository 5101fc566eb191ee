//! Arguments are parsed once, validated against the tool's input schema
//! before the plugin runs, and refused with an error naming the field.

use portcullis::{CallContext, DirMode, Error, Host, PluginConfig};
use portcullis_tests::{Fixture, plugin_path, plugin_sha};

async fn files_host(fixture: &Fixture) -> Host {
    Host::builder()
        .plugin(
            PluginConfig::new("files", plugin_path("files"))
                .sha256(plugin_sha("files"))
                .dir(fixture.path("ro"), "/ro", DirMode::ReadOnly),
        )
        .build()
        .await
        .expect("files loads")
}

fn invalid(result: Result<portcullis::ToolOutput, Error>) -> (String, String) {
    match result {
        Err(Error::InvalidArguments {
            pointer, reason, ..
        }) => (pointer, reason),
        other => panic!("expected invalid arguments, got {other:?}"),
    }
}

#[tokio::test]
async fn duplicate_keys_are_refused() {
    let fixture = Fixture::new();
    let host = files_host(&fixture).await;
    let ctx = CallContext::new();
    // A validator and a plugin that disagree on which duplicate wins would
    // let an attacker smuggle an unchecked value past the schema.
    let (_, reason) = invalid(
        host.call(
            "files.read_file",
            r#"{"path": "/ro/notes.txt", "path": "/etc/passwd"}"#,
            &ctx,
        )
        .await,
    );
    assert!(
        reason.contains("duplicate") && reason.contains("path"),
        "{reason}"
    );
}

#[tokio::test]
async fn schema_violations_name_the_failing_field() {
    let fixture = Fixture::new();
    let host = files_host(&fixture).await;
    let ctx = CallContext::new();
    let (pointer, reason) = invalid(host.call("files.read_file", r#"{"path": 42}"#, &ctx).await);
    assert_eq!(pointer, "/path", "{reason}");
    let (_, reason) = invalid(host.call("files.read_file", "{}", &ctx).await);
    assert!(reason.contains("path"), "{reason}");
    for bad in ["", "[]", "null", "{", "\"text\""] {
        invalid(host.call("files.read_file", bad, &ctx).await);
    }
    // And a valid call still works.
    let out = host
        .call("files.read_file", r#"{"path": "/ro/notes.txt"}"#, &ctx)
        .await
        .expect("valid call");
    assert!(
        out.value.to_string().contains("read-only notes"),
        "{}",
        out.value
    );
}

#[tokio::test]
async fn unknown_tool_lists_the_available_ones() {
    let fixture = Fixture::new();
    let host = files_host(&fixture).await;
    let err = host
        .call("files.delete_everything", "{}", &CallContext::new())
        .await
        .expect_err("unknown tool");
    assert!(matches!(err, Error::UnknownTool { .. }), "{err:?}");
    let hint = err.hint().expect("hint");
    assert!(
        hint.contains("files.read_file") && hint.contains("files.list_dir"),
        "{hint}"
    );
    // Unqualified names work when unambiguous.
    host.call("list_dir", r#"{"path": "/ro"}"#, &CallContext::new())
        .await
        .expect("unqualified name");
}
