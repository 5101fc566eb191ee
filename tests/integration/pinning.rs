//! Plugins are pinned by the sha256 of the exact bytes the host compiles,
//! and the bundled plugins build reproducibly.

use portcullis::{Error, Host, PluginConfig, sha256_hex};
use portcullis_tests::{plugin_path, plugin_sha, repo_root};
use std::path::Path;
use std::process::Command;

#[tokio::test]
async fn wrong_pin_is_refused_with_expected_and_actual_hash() {
    let wrong = "0".repeat(64);
    let result = Host::builder()
        .plugin(PluginConfig::new("files", plugin_path("files")).sha256(&wrong))
        .build()
        .await;
    match result {
        Err(e @ Error::PinMismatch { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&wrong), "{text}");
            assert!(text.contains(&plugin_sha("files")), "{text}");
            assert!(e.hint().is_some_and(|h| h.contains("portcullis pin")));
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_pin_is_refused() {
    let result = Host::builder()
        .plugin(PluginConfig::new("files", plugin_path("files")))
        .build()
        .await;
    match result {
        Err(e @ Error::Manifest { .. }) => {
            assert!(e.to_string().contains("sha256"), "{e}");
        }
        other => panic!("expected a manifest error, got {other:?}"),
    }
}

async fn load_bytes(bytes: &[u8]) -> Result<Host, Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("plugin.wasm");
    std::fs::write(&path, bytes).expect("write");
    Host::builder()
        .plugin(PluginConfig::new("suspect", &path).sha256(sha256_hex(bytes)))
        .build()
        .await
}

#[tokio::test]
async fn non_component_files_are_refused_with_a_clear_error() {
    let core_module = wat::parse_str("(module)").expect("wat");
    let component = std::fs::read(plugin_path("files")).expect("files.wasm");
    let cases: [(&str, &[u8]); 4] = [
        ("text", b"not wasm at all"),
        ("empty file", b""),
        ("truncated component", &component[..component.len() / 2]),
        ("core module", &core_module),
    ];
    for (what, bytes) in cases {
        match load_bytes(bytes).await {
            Err(e @ Error::InvalidComponent { .. }) => {
                assert!(
                    e.hint().is_some_and(|h| h.contains("wasm32-wasip2")),
                    "{what}"
                );
            }
            other => panic!("{what}: expected an invalid component, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bundled_manifest_loads_with_its_committed_pins() {
    let host = Host::from_manifest(repo_root().join("plugins/portcullis.toml"))
        .await
        .expect("the bundled manifest loads: if the plugins changed, run `cargo run -- pin plugins/portcullis.toml`");
    let names: Vec<String> = host.tools().into_iter().map(|t| t.name).collect();
    assert!(names.contains(&"files.read_file".to_string()), "{names:?}");
    assert!(names.contains(&"files.list_dir".to_string()), "{names:?}");
    assert!(names.contains(&"json.query".to_string()), "{names:?}");
}

/// Copies the source tree at `from` into `to`, without build outputs.
fn copy_sources(from: &Path, to: &Path) {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read dir").flatten() {
            let name = entry.file_name();
            if name == "target" || name == "dist" || name == ".git" {
                continue;
            }
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                copy_dir(&entry.path(), &to.join(&name));
            } else if kind.is_file() {
                std::fs::copy(entry.path(), to.join(&name)).expect("copy");
            }
        }
    }
    // The whole source tree: the SDK inherits settings from the root
    // workspace, which names every member.
    copy_dir(from, to);
}

#[test]
fn plugins_build_reproducibly_under_another_cargo_home_and_checkout() {
    let root = repo_root();
    let work = tempfile::tempdir().expect("temp dir");
    let checkout = work.path().join("elsewhere/checkout");
    copy_sources(&root, &checkout);

    // A fresh cargo home, seeded with the downloaded crates and index so
    // the build does not depend on the network more than the first did.
    let cargo_home = work.path().join("another-cargo-home");
    let here = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    if let Some(here) = here {
        for sub in ["registry/index", "registry/cache"] {
            let (from, to) = (here.join(sub), cargo_home.join(sub));
            if from.is_dir() {
                std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
                let status = Command::new("cp")
                    .arg("-R")
                    .arg(&from)
                    .arg(&to)
                    .status()
                    .expect("run cp");
                assert!(status.success(), "copying `{}` failed", from.display());
            }
        }
    }

    let output = Command::new("bash")
        .arg(checkout.join("plugins/build.sh"))
        // Only Rust builds are reproducible (see wit/README.md).
        .args(["--only", "rust"])
        .env("CARGO_HOME", &cargo_home)
        .env("CARGO_TARGET_DIR", work.path().join("target"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run build.sh");
    assert!(
        output.status.success(),
        "build.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let manifest = std::fs::read_to_string(root.join("plugins/portcullis.toml")).expect("manifest");
    for plugin in [
        "files", "json", "refunds", "fetch", "issues", "hostile", "sockets", "egress", "wasihttp",
    ] {
        let rebuilt = std::fs::read(checkout.join(format!("plugins/dist/{plugin}.wasm")))
            .expect("rebuilt component");
        let sha = sha256_hex(&rebuilt);
        assert_eq!(
            sha,
            plugin_sha(plugin),
            "`{plugin}` differs between the two builds"
        );
        let target = work.path().join("target");
        for machine_path in [
            root.to_str(),
            checkout.to_str(),
            cargo_home.to_str(),
            target.to_str(),
        ]
        .into_iter()
        .flatten()
        {
            assert!(
                !contains(&rebuilt, machine_path.as_bytes()),
                "`{plugin}` contains the machine path `{machine_path}`"
            );
        }
        if ["files", "json", "refunds", "fetch"].contains(&plugin) {
            assert!(
                manifest.contains(&sha),
                "the committed pin of `{plugin}` in plugins/portcullis.toml is not {sha}"
            );
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn cache_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("cache dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    entries.sort();
    entries
}

async fn cached_files(cache: &Path, sha: String) -> Result<Host, Error> {
    Host::builder()
        .compile_cache(cache)
        .plugin(PluginConfig::new("files", plugin_path("files")).sha256(sha))
        .build()
        .await
}

#[tokio::test]
async fn compile_cache_is_keyed_by_the_pinned_bytes_and_never_bypasses_the_pin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let host = cached_files(&cache, plugin_sha("files"))
        .await
        .expect("loads");
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let name = entries[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with(&plugin_sha("files")), "{name}");
    drop(host);

    // A second host loads from the cache and works the same.
    let host = cached_files(&cache, plugin_sha("files"))
        .await
        .expect("loads");
    host.tools()
        .iter()
        .find(|t| t.name == "files.read_file")
        .expect("tools listed from the cached plugin");

    // The pin is checked on the file's bytes before a cached artifact is used.
    match cached_files(&cache, "0".repeat(64)).await {
        Err(Error::PinMismatch { .. }) => {}
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_replaced_plugin_file_is_refused_even_when_its_pinned_artifact_is_cached() {
    // The host looks the pinned sha256 up in the cache while it hashes the
    // bytes it read: an artifact found for the pin is used only if the
    // file's bytes match the pin.
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let source = dir.path().join("files.wasm");
    std::fs::copy(plugin_path("files"), &source).expect("copy");
    let load = || {
        Host::builder()
            .compile_cache(&cache)
            .plugin(PluginConfig::new("files", &source).sha256(plugin_sha("files")))
            .build()
    };
    load().await.expect("fills the cache");
    assert_eq!(cache_entries(&cache).len(), 1);
    std::fs::copy(plugin_path("json"), &source).expect("replace");
    match load().await {
        Err(Error::PinMismatch { actual, .. }) => assert_eq!(actual, plugin_sha("json")),
        Err(other) => panic!("expected a pin mismatch, got {other}"),
        Ok(_) => panic!("a replaced file was loaded from the cache"),
    }
}

#[tokio::test]
async fn tampered_compile_cache_entry_is_recompiled_not_loaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    cached_files(&cache, plugin_sha("files"))
        .await
        .expect("loads");
    let artifact = cache_entries(&cache).remove(0);
    let mut bytes = std::fs::read(&artifact).expect("artifact");
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(&artifact, &bytes).expect("tamper");

    let host = cached_files(&cache, plugin_sha("files"))
        .await
        .expect("recompiled");
    assert!(!host.tools().is_empty());
    // The entry was replaced by a good one.
    assert_ne!(std::fs::read(&artifact).expect("artifact"), bytes);
}

/// A manifest whose plugin fails is reported without loading the plugins
/// after it: the plugin after it is never compiled into the cache. Loading
/// one plugin at a time (one instance slot) makes which plugins started
/// deterministic; loading in parallel, a plugin already started when
/// another failed still finishes.
#[tokio::test]
async fn plugins_after_a_failing_one_are_not_loaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let result = Host::builder()
        .max_concurrent_calls(1)
        .compile_cache(&cache)
        .plugin(PluginConfig::new("hostile", plugin_path("hostile")).sha256("0".repeat(64)))
        .plugin(PluginConfig::new("files", plugin_path("files")).sha256(plugin_sha("files")))
        .build()
        .await;
    match result {
        Err(Error::PinMismatch { plugin, .. }) => assert_eq!(plugin, "hostile"),
        Err(other) => panic!("expected hostile's pin mismatch, got {other:?}"),
        Ok(_) => panic!("a wrong pin loaded"),
    }
    let compiled = std::fs::read_dir(&cache).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .count()
    });
    assert_eq!(compiled, 0, "a plugin after the failing one was compiled");
}
