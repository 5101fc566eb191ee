//! `portcullis test`: the bundled plugins pass their tests files, and a
//! failing case makes the command exit non-zero in every output format.
//! Uses the real binary and the bundled plugins (run `plugins/build.sh`
//! first; the README's test command does).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

fn cache_dir() -> &'static Path {
    static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    CACHE
        .get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

fn portcullis(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("PORTCULLIS_CACHE_DIR", cache_dir())
        .output()
        .expect("run portcullis")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `portcullis test` on a manifest under `plugins/` and checks that
/// every case passed.
fn passes_its_tests_files(manifest: &str) {
    let manifest = root().join(manifest);
    assert!(
        manifest.is_file(),
        "`{}` is missing: run `plugins/build.sh` first (the README's test command does)",
        manifest.display()
    );
    let out = portcullis(&[Path::new("test"), &manifest]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "{stdout}");
}

#[test]
fn the_bundled_plugins_pass_their_tests_files() {
    passes_its_tests_files("plugins/portcullis.toml");
}

/// The Python and JavaScript plugins, as `plugins/build.sh` pinned them
/// into `dist/languages.toml`.
#[test]
fn the_language_plugins_pass_their_tests_files() {
    passes_its_tests_files("plugins/dist/languages.toml");
}

/// The `json` plugin with one passing and one failing case.
fn failing_suite() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let component = root().join("plugins/dist/json.wasm");
    let sha = text(&portcullis(&[Path::new("hash"), &component]).stdout);
    let sha = sha.split_whitespace().next().expect("a hash");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!(
            "[plugins.json]\nsource = {:?}\nsha256 = \"{sha}\"\n",
            component.display().to_string()
        ),
    )
    .expect("write manifest");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    std::fs::write(
        dir.path().join("tests/json.toml"),
        r#"
[[case]]
name = "length of three"
tool = "length"
arguments = { value = [1, 2, 3] }
expect.output = 3

[[case]]
name = "wrong on purpose <&>"
tool = "length"
arguments = { value = [1, 2] }
expect.output = 5
"#,
    )
    .expect("write tests");
    dir
}

#[test]
fn a_failing_case_exits_non_zero_in_every_format() {
    let dir = failing_suite();
    let manifest = dir.path().join("portcullis.toml");

    let out = portcullis(&[Path::new("test"), &manifest]);
    assert_eq!(out.status.code(), Some(1));
    let table = text(&out.stdout);
    assert!(table.contains("FAILED"), "{table}");
    assert_eq!(table.lines().last(), Some("1 passed, 1 failed"), "{table}");

    let out = portcullis(&[
        Path::new("test"),
        &manifest,
        Path::new("--format"),
        Path::new("json"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["passed"], 1);
    assert_eq!(doc["failed"], 1);
    assert_eq!(doc["cases"][1]["passed"], false);

    let out = portcullis(&[
        Path::new("test"),
        &manifest,
        Path::new("--format"),
        Path::new("junit"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let xml = text(&out.stdout);
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(xml.contains("wrong on purpose &lt;&amp;&gt;"), "{xml}");

    // A filter that selects only the passing tool's cases... both are
    // `length`, so filtering by another tool runs nothing and passes.
    let out = portcullis(&[Path::new("test"), &manifest, Path::new("json.keys")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn a_manifest_without_tests_files_is_a_configuration_error() {
    let dir = failing_suite();
    std::fs::remove_dir_all(dir.path().join("tests")).expect("rm");
    let out = portcullis(&[Path::new("test"), &dir.path().join("portcullis.toml")]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[test]
fn fixture_cases_run_through_the_egress_gate_and_never_show_the_secret() {
    // The bundled suite: a fixture-served success, denials, a secret
    // injection assertion and limit hits.
    let manifest = root().join("plugins/tests/tracker/portcullis.toml");
    let out = portcullis(&[Path::new("test"), &manifest]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("lists the tracker's issues"), "{stdout}");

    // A case claiming the bound secret does not arrive fails, naming the
    // header and never its value.
    let dir = tempfile::tempdir().expect("temp dir");
    let token = "fixture-test-token-0123456789";
    std::fs::write(dir.path().join("tracker.token"), token).expect("token");
    let component = root().join("plugins/dist/issues.wasm");
    let sha = text(&portcullis(&[Path::new("hash"), &component]).stdout);
    let sha = sha.split_whitespace().next().expect("a hash");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!(
            r#"[secrets.tracker]
source = "file:tracker.token"
destinations = ["https://issues.example.com/api/v1"]
inject = {{ header = "Authorization", format = "Bearer {{}}" }}

[plugins.issues]
source = {:?}
sha256 = "{sha}"
http = ["https://issues.example.com/api/v1/"]
secrets = ["tracker"]
"#,
            component.display().to_string()
        ),
    )
    .expect("write manifest");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    std::fs::write(
        dir.path().join("tests/issues.toml"),
        r#"
[[case]]
name = "claims no credential is sent"
tool = "list"
expect.output = { count = 0 }
[[case.fixture]]
url = "https://issues.example.com/api/v1/issues?limit=20"
json = []
absent_headers = ["authorization"]
"#,
    )
    .expect("write tests");
    let out = portcullis(&[Path::new("test"), &dir.path().join("portcullis.toml")]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("received a `authorization` header"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(token) && !stderr.contains(token),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn a_writing_case_leaves_the_granted_folder_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("a.txt"), "original").expect("write");
    let component = root().join("plugins/dist/files.wasm");
    let sha = text(&portcullis(&[Path::new("hash"), &component]).stdout);
    let sha = sha.split_whitespace().next().expect("a hash");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!(
            "[plugins.files]\nsource = {:?}\nsha256 = \"{sha}\"\ndirs = [{{ host = \"data\", guest = \"/data\", mode = \"read-write\" }}]\n",
            component.display().to_string()
        ),
    )
    .expect("write manifest");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    std::fs::write(
        dir.path().join("tests/files.toml"),
        r#"
[[case]]
name = "writes a new file"
tool = "write_file"
arguments = { path = "/data/new.txt", content = "written by a case" }
expect.output = {}

[[case]]
name = "overwrites an existing file"
tool = "write_file"
arguments = { path = "/data/a.txt", content = "changed" }
expect.output = {}

[[case]]
name = "each case starts from the original folder"
tool = "read_file"
arguments = { path = "/data/new.txt" }
expect.error = "not-found"
"#,
    )
    .expect("write tests");
    let out = portcullis(&[Path::new("test"), &dir.path().join("portcullis.toml")]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.ends_with("3 passed, 0 failed\n"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(data.join("a.txt")).expect("read"),
        "original"
    );
    assert!(
        !data.join("new.txt").exists(),
        "the case wrote into the author's folder"
    );
}
