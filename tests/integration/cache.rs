//! The compile cache is authenticated, not just checksummed (issue 12,
//! reproduction 1): a planted artifact is recompiled, never run.

use portcullis::{CallContext, DirMode, Host, PluginConfig};
use portcullis_tests::{Fixture, plugin_path, plugin_sha};
use std::path::{Path, PathBuf};

fn plugin(name: &str) -> PluginConfig {
    PluginConfig::new(name, plugin_path(name)).sha256(plugin_sha(name))
}

/// The cache entry (artifact, tag) of the component pinned by `sha`.
fn entry(cache: &Path, sha: &str) -> (PathBuf, PathBuf) {
    let artifact = std::fs::read_dir(cache)
        .expect("cache")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "cwasm")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(sha))
        })
        .expect("a cached artifact");
    let tag = artifact.with_extension("mac");
    assert!(tag.is_file(), "no tag beside {}", artifact.display());
    (artifact, tag)
}

#[tokio::test]
async fn a_planted_artifact_from_another_component_is_recompiled_never_loaded() {
    let f = Fixture::new();
    let cache = tempfile::tempdir().expect("temp dir");
    let cache = cache.path().join("cache");
    let files = || plugin("files").dir(f.path("ro"), "/ro", DirMode::ReadOnly);
    Host::builder()
        .compile_cache(&cache)
        .plugin(files())
        .plugin(plugin("json"))
        .build()
        .await
        .expect("fills the cache");
    // What a plugin with write access to the cache did: move another
    // component's artifact, with its own valid sidecar, under the name of
    // the one the host will load next.
    let (files_artifact, files_tag) = entry(&cache, &plugin_sha("files"));
    let (json_artifact, json_tag) = entry(&cache, &plugin_sha("json"));
    std::fs::copy(&json_artifact, &files_artifact).expect("plant");
    std::fs::copy(&json_tag, &files_tag).expect("plant");

    let host = Host::builder()
        .compile_cache(&cache)
        .plugin(files())
        .build()
        .await
        .expect("loads");
    let out = host
        .call(
            "files.list_dir",
            r#"{"path": "/ro"}"#,
            &CallContext::default(),
        )
        .await
        .expect("the real files plugin answers");
    assert!(format!("{out:?}").contains("notes.txt"), "{out:?}");
    // The planted artifact was replaced by a freshly compiled one.
    assert_ne!(
        std::fs::read(&files_artifact).expect("artifact"),
        std::fs::read(&json_artifact).expect("artifact")
    );
}
