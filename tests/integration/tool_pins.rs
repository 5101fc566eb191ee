//! Tool lists are pinned like bytes (issue 12, reproduction 7): a plugin
//! whose declared tools changed since `portcullis pin` recorded them is
//! refused at load, with a diff of what changed.

use portcullis::{Error, Host};
use portcullis_tests::{plugin_path, plugin_sha};

/// A manifest in `dir` pinning the files plugin's bytes and the tool list
/// `pinned` (recorded beside it, as `portcullis pin` does).
fn manifest(dir: &std::path::Path, pinned: &serde_json::Value) -> std::path::PathBuf {
    let path = dir.join("portcullis.toml");
    std::fs::write(
        &path,
        format!(
            "[plugins.files]\nsource = {:?}\nsha256 = \"{}\"\ntools_sha256 = \"{}\"\n",
            plugin_path("files").display().to_string(),
            plugin_sha("files"),
            portcullis::tool_list_hash(pinned)
        ),
    )
    .expect("write manifest");
    let lock = serde_json::json!({ "files": pinned });
    std::fs::write(dir.join("portcullis.tools.json"), lock.to_string()).expect("write lock");
    path
}

async fn declared() -> serde_json::Value {
    portcullis::inspect(plugin_path("files"))
        .await
        .expect("inspect")
        .tool_list
        .expect("a tool list")
}

#[tokio::test]
async fn a_plugin_whose_tool_list_changed_since_its_pin_is_refused_with_the_diff() {
    let now = declared().await;
    // What was pinned: the same tools, but `read_file` said something
    // harmless then (now: whatever the component says).
    let mut before = now.clone();
    let tools = before.as_array_mut().expect("a list");
    let read_file = tools
        .iter_mut()
        .find(|t| t["name"] == "read_file")
        .expect("read_file");
    read_file["description"] = "Reads a file you name.".into();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = manifest(dir.path(), &before);
    match Host::builder().manifest(&path).build().await {
        Err(e @ Error::ToolListChanged { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("~ tool `read_file`: description changed")
                    && text.contains("- \"Reads a file you name.\""),
                "{text}"
            );
            assert!(
                e.hint()
                    .is_some_and(|h| h.contains("--accept-tool-changes")),
                "{e:?}"
            );
        }
        Err(other) => panic!("expected a changed tool list, got {other:?}"),
        Ok(_) => panic!("a changed tool list loaded"),
    }
    // The current list, pinned, loads.
    let path = manifest(dir.path(), &now);
    Host::builder()
        .manifest(&path)
        .build()
        .await
        .expect("the pinned list loads");
}
