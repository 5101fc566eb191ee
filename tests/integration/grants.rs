//! Grants an operator cannot get dangerously wrong (issue 12, invariant
//! 11): the host's own state is out of every grant, dangerous folders
//! need an explicit `unsafe_allow`, and no two grants alias one folder
//! when either writes. Each is refused at load, naming the grant.

use portcullis::{DirMode, Error, Host, PluginConfig};
use portcullis_tests::{Fixture, plugin_path, plugin_sha};
use std::path::Path;

fn files() -> PluginConfig {
    PluginConfig::new("files", plugin_path("files")).sha256(plugin_sha("files"))
}

/// The load error's message and hint, or a panic if the host loaded.
async fn refused(builder: portcullis::HostBuilder) -> String {
    match builder.build().await {
        Err(e @ Error::Manifest { .. }) => format!("{e} / {}", e.hint().unwrap_or_default()),
        Err(other) => panic!("expected a manifest error, got {other:?}"),
        Ok(_) => panic!("the host loaded"),
    }
}

/// A manifest in `dir` granting `files` the folders of `dirs` (TOML
/// inline tables) plus `extra` text.
fn manifest(dir: &Path, dirs: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("portcullis.toml");
    let text = format!(
        "[plugins.files]\nsource = {:?}\nsha256 = \"{}\"\ndirs = [{dirs}]\n{extra}",
        plugin_path("files").display().to_string(),
        plugin_sha("files")
    );
    std::fs::write(&path, text).expect("write manifest");
    path
}

#[tokio::test]
async fn a_read_write_grant_holding_the_manifest_is_refused() {
    // Reproduction 2: with `.` granted read-write, a plugin appended
    // raised limits to its own manifest.
    let f = Fixture::new();
    let path = manifest(
        f.root(),
        r#"{ host = ".", guest = "/all", mode = "read-write" }"#,
        "",
    );
    let why = refused(Host::builder().manifest(&path)).await;
    assert!(
        why.contains("would expose the manifest") && why.contains("/all"),
        "{why}"
    );
}

#[tokio::test]
async fn a_grant_inside_the_manifests_folder_is_fine() {
    let f = Fixture::new();
    let path = manifest(
        f.root(),
        r#"{ host = "ro", guest = "/ro" }, { host = "rw", guest = "/rw", mode = "read-write" }"#,
        "[audit]\npath = \"audit.jsonl\"\n",
    );
    Host::builder()
        .manifest(&path)
        .build()
        .await
        .expect("grants beside the manifest load");
}

#[tokio::test]
async fn an_audit_log_inside_a_grant_is_refused() {
    // Reproduction 5: `path = "rw/audit.jsonl"` was accepted.
    let f = Fixture::new();
    for mode in ["read-only", "read-write"] {
        let path = manifest(
            f.root(),
            &format!(r#"{{ host = "rw", guest = "/rw", mode = "{mode}" }}"#),
            "[audit]\npath = \"rw/audit.jsonl\"\n",
        );
        let why = refused(Host::builder().manifest(&path)).await;
        assert!(why.contains("would expose the audit log"), "{why}");
    }
}

#[tokio::test]
async fn a_compile_cache_inside_a_grant_is_refused() {
    // Reproduction 1: a read-write grant holding the compile cache let a
    // plugin plant native code.
    let f = Fixture::new();
    let why = refused(
        Host::builder()
            .compile_cache(f.path("rw/cache"))
            .plugin(files().dir(f.path("rw"), "/rw", DirMode::ReadWrite)),
    )
    .await;
    assert!(why.contains("would expose the compile cache"), "{why}");
    // Nor may a grant lie inside the cache.
    std::fs::create_dir_all(f.path("cache/sub")).expect("mkdir");
    let why = refused(
        Host::builder()
            .compile_cache(f.path("cache"))
            .plugin(files().dir(f.path("cache/sub"), "/sub", DirMode::ReadOnly)),
    )
    .await;
    assert!(why.contains("inside the compile cache"), "{why}");
}

#[tokio::test]
async fn a_core_dump_folder_inside_or_around_a_grant_is_refused() {
    let f = Fixture::new();
    let why = refused(
        Host::builder()
            .core_dumps(f.path("ro/dumps"))
            .plugin(files().dir(f.path("ro"), "/ro", DirMode::ReadOnly)),
    )
    .await;
    assert!(why.contains("would expose the core dump folder"), "{why}");
    std::fs::create_dir_all(f.path("dumps/x")).expect("mkdir");
    let why = refused(
        Host::builder()
            .core_dumps(f.path("dumps"))
            .plugin(files().dir(f.path("dumps/x"), "/x", DirMode::ReadOnly)),
    )
    .await;
    assert!(why.contains("inside the core dump folder"), "{why}");
}

#[tokio::test]
async fn a_secret_file_inside_a_grant_is_refused() {
    // Reproduction 4: `source = "file:ro/xkey.txt"` with `ro` granted put
    // the raw value in the plugin's reach.
    let f = Fixture::new();
    std::fs::write(f.path("ro/xkey.txt"), "0123456789abcdef-key").expect("write");
    let path = manifest(
        f.root(),
        r#"{ host = "ro", guest = "/ro" }"#,
        "[secrets.xkey]\nsource = \"file:ro/xkey.txt\"\ndestinations = [\"https://api.example.com\"]\ninject = { header = \"X-Key\" }\n",
    );
    let why = refused(Host::builder().manifest(&path)).await;
    assert!(why.contains("secret `xkey`"), "{why}");
    assert!(!why.contains("0123456789abcdef-key"), "{why}");
}

#[cfg(unix)]
#[tokio::test]
async fn a_plugin_source_reached_through_a_grant_is_refused() {
    // Reproduction 2: a `source` that is a symlink into a grant.
    let f = Fixture::new();
    std::fs::copy(plugin_path("files"), f.path("rw/files.wasm")).expect("copy");
    std::os::unix::fs::symlink(f.path("rw/files.wasm"), f.path("files.wasm")).expect("symlink");
    let why = refused(
        Host::builder().plugin(
            PluginConfig::new("files", f.path("files.wasm"))
                .sha256(plugin_sha("files"))
                .dir(f.path("rw"), "/rw", DirMode::ReadWrite),
        ),
    )
    .await;
    assert!(why.contains("would expose the component"), "{why}");
}

#[tokio::test]
async fn dangerous_folders_are_refused_without_unsafe_allow() {
    // Reproduction 3: `/`, `$HOME`, `/etc`, `/proc`, `/sys`, `/dev` and
    // `/var/run` were all accepted; `/proc/self/environ` gave away the
    // host's environment.
    let mut folders = vec![
        "/", "/etc", "/proc", "/sys", "/dev", "/var/run", "/run", "/boot",
    ];
    let home = std::env::var("HOME").unwrap_or_default();
    if !home.is_empty() {
        folders.push(&home);
    }
    for folder in folders {
        if !Path::new(folder).is_dir() {
            continue;
        }
        let why =
            refused(Host::builder().plugin(files().dir(folder, "/x", DirMode::ReadOnly))).await;
        assert!(
            why.contains("would expose") && why.contains("unsafe_allow"),
            "{folder}: {why}"
        );
    }
}

#[tokio::test]
async fn unsafe_allow_admits_one_dangerous_folder() {
    Host::builder()
        .plugin(files().unsafe_dir("/proc", "/proc", DirMode::ReadOnly, "reads cpu info"))
        .build()
        .await
        .expect("an explicit unsafe_allow loads");
    // In a manifest too, and an empty reason is no reason.
    let f = Fixture::new();
    let path = manifest(
        f.root(),
        r#"{ host = "/proc", guest = "/proc", unsafe_allow = "" }"#,
        "",
    );
    let why = refused(Host::builder().manifest(&path)).await;
    assert!(why.contains("`unsafe_allow` is empty"), "{why}");
}

#[cfg(unix)]
#[tokio::test]
async fn aliased_grants_are_refused_when_either_writes() {
    // Reproduction 6: only guest paths were checked for overlap.
    let f = Fixture::new();
    std::fs::create_dir(f.path("rw/config")).expect("mkdir");
    std::os::unix::fs::symlink(f.path("rw"), f.path("alias")).expect("symlink");
    let cases = [
        (
            "subfolder",
            files().dir(f.path("rw"), "/data", DirMode::ReadWrite).dir(
                f.path("rw/config"),
                "/cfg",
                DirMode::ReadOnly,
            ),
        ),
        (
            "same folder",
            files().dir(f.path("rw"), "/a", DirMode::ReadOnly).dir(
                f.path("rw"),
                "/b",
                DirMode::ReadWrite,
            ),
        ),
        (
            "symlink alias",
            files().dir(f.path("rw"), "/a", DirMode::ReadWrite).dir(
                f.path("alias"),
                "/b",
                DirMode::ReadOnly,
            ),
        ),
    ];
    for (case, plugin) in cases {
        let why = refused(Host::builder().plugin(plugin)).await;
        assert!(why.contains("overlap"), "{case}: {why}");
    }
    // Across plugins: one plugin's read-write grant would rearrange the
    // other's view.
    let json = PluginConfig::new("json", plugin_path("json"))
        .sha256(plugin_sha("json"))
        .dir(f.path("rw/config"), "/cfg", DirMode::ReadOnly);
    let why = refused(
        Host::builder()
            .plugin(files().dir(f.path("rw"), "/rw", DirMode::ReadWrite))
            .plugin(json),
    )
    .await;
    assert!(
        why.contains("overlap") && why.contains("plugin `json`"),
        "{why}"
    );
    // Read-only overlaps are harmless.
    Host::builder()
        .plugin(files().dir(f.path("ro"), "/a", DirMode::ReadOnly).dir(
            f.path("ro"),
            "/b",
            DirMode::ReadOnly,
        ))
        .build()
        .await
        .expect("read-only aliases load");
}

fn api_secret(dir: &Path, destination: &str) -> portcullis::SecretConfig {
    std::fs::write(dir.join("api.token"), "an-api-token-value-long").expect("write");
    portcullis::SecretConfig::file("api", dir.join("api.token"))
        .destination(portcullis::manifest::DestinationEntry::url(destination))
        .inject(portcullis::manifest::InjectEntry::header(
            "Authorization",
            "Bearer {}",
        ))
}

#[tokio::test]
async fn a_secret_destination_the_allowlist_never_reaches_is_refused() {
    // Reproduction 4: a destination outside the plugin's allowlist was
    // accepted silently.
    let dir = tempfile::tempdir().expect("temp dir");
    let fetcher = || files().http("https://api.example.com/v1/").secret("api");
    let why = refused(
        Host::builder()
            .secret(api_secret(dir.path(), "https://api.exmaple.com"))
            .plugin(fetcher()),
    )
    .await;
    assert!(
        why.contains("destination `https://api.exmaple.com:443`")
            && why.contains("outside the `http` allowlist of plugin `files`"),
        "{why}"
    );
    // A destination the allowlist reaches (here: a wider prefix) loads.
    Host::builder()
        .secret(api_secret(dir.path(), "https://api.example.com"))
        .plugin(fetcher())
        .build()
        .await
        .expect("a reachable destination loads");
}
