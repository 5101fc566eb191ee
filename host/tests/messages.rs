//! Snapshot tests of what users read: manifest and CLI error messages, with
//! temporary paths and hashes filtered out. Update with
//! `INSTA_UPDATE=always cargo test -p portcullis --test messages` and review
//! the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Runs `portcullis ARGS` in `dir` and renders exit code and both streams.
fn run_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("PORTCULLIS_CACHE_DIR", dir.join(".cache"))
        .output()
        .expect("run portcullis");
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A temp folder with `portcullis.toml` holding `manifest`, a `docs/` folder
/// and a copy of the files component at `files.wasm`.
fn project(manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("docs")).expect("mkdir");
    let files = root().join("plugins/dist/files.wasm");
    assert!(files.is_file(), "run `plugins/build.sh` first");
    std::fs::copy(files, dir.path().join("files.wasm")).expect("copy");
    std::fs::write(dir.path().join("portcullis.toml"), manifest).expect("write");
    dir
}

fn check(manifest: &str) -> String {
    let dir = project(manifest);
    run_in(dir.path(), &["check", "portcullis.toml"])
}

macro_rules! snapshot {
    ($name:expr, $text:expr) => {
        insta::with_settings!({
            filters => vec![
                (r"[0-9a-f]{64}", "[SHA256]"),
                (r"/tmp/[^\s`']+", "[TMP]"),
            ],
            prepend_module_to_snapshot => false,
        }, {
            insta::assert_snapshot!($name, $text);
        });
    };
}

const PIN: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn unknown_field_names_the_field_and_line() {
    snapshot!(
        "unknown_field",
        check(&format!(
            "[plugins.files]\nsource = \"files.wasm\"\nsha256 = \"{PIN}\"\nnetwork = \"*\"\n"
        ))
    );
}

#[test]
fn missing_pin_says_how_to_pin() {
    snapshot!(
        "missing_pin",
        check("[plugins.files]\nsource = \"files.wasm\"\n")
    );
}

#[test]
fn malformed_pin_says_how_to_hash() {
    snapshot!(
        "malformed_pin",
        check("[plugins.files]\nsource = \"files.wasm\"\nsha256 = \"abc\"\n")
    );
}

#[test]
fn wrong_pin_shows_both_hashes() {
    snapshot!(
        "wrong_pin",
        check(&format!(
            "[plugins.files]\nsource = \"files.wasm\"\nsha256 = \"{PIN}\"\n"
        ))
    );
}

#[test]
fn missing_directory_grant_is_named() {
    snapshot!(
        "missing_dir",
        check(&format!(
            "[plugins.files]\nsource = \"files.wasm\"\nsha256 = \"{PIN}\"\ndirs = [{{ host = \"nope\", guest = \"/nope\" }}]\n"
        ))
    );
}

#[test]
fn bad_guest_path_is_explained() {
    snapshot!(
        "bad_guest_path",
        check(&format!(
            "[plugins.files]\nsource = \"files.wasm\"\nsha256 = \"{PIN}\"\ndirs = [{{ host = \"docs\", guest = \"docs/../x\" }}]\n"
        ))
    );
}

#[test]
fn bad_limit_units_are_explained() {
    snapshot!(
        "bad_limit_units",
        check(&format!(
            "[plugins.files]\nsource = \"files.wasm\"\nsha256 = \"{PIN}\"\n[plugins.files.limits]\nmemory = \"64 parsecs\"\n"
        ))
    );
    snapshot!(
        "limit_out_of_range",
        check(&format!(
            "[plugins.files]\nsource = \"files.wasm\"\nsha256 = \"{PIN}\"\n[plugins.files.limits]\ntimeout = \"20m\"\n"
        ))
    );
}

#[test]
fn missing_manifest_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    snapshot!(
        "missing_manifest",
        run_in(dir.path(), &["check", "nowhere.toml"])
    );
}

#[test]
fn missing_component_is_named() {
    snapshot!(
        "missing_component",
        check(&format!(
            "[plugins.files]\nsource = \"gone.wasm\"\nsha256 = \"{PIN}\"\n"
        ))
    );
}

#[test]
fn call_errors_read_well() {
    let dir = project("");
    let sha = {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["hash", "files.wasm"])
            .current_dir(dir.path())
            .output()
            .expect("hash");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("sha")
            .to_string()
    };
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!(
            "[plugins.files]\nsource = \"files.wasm\"\nsha256 = \"{sha}\"\ndirs = [{{ host = \"docs\", guest = \"/docs\" }}]\n"
        ),
    )
    .expect("write");
    let call =
        |tool: &str, args: &str| run_in(dir.path(), &["call", "portcullis.toml", tool, args]);
    snapshot!("call_unknown_tool", call("files.format_disk", "{}"));
    snapshot!(
        "call_schema_violation",
        call("files.read_file", r#"{"path": 7}"#)
    );
    snapshot!(
        "call_duplicate_key",
        call("files.read_file", r#"{"path": "a", "path": "b"}"#)
    );
    snapshot!("call_not_json", call("files.read_file", "path=/etc/passwd"));
    snapshot!(
        "call_tool_error",
        call("files.read_file", r#"{"path": "/docs/missing.txt"}"#)
    );
    snapshot!(
        "call_outside_grant",
        call("files.read_file", r#"{"path": "/etc/passwd"}"#)
    );
}

/// `[secrets.api]` for the files plugin, sourced from `api.token`.
const SECRET_MANIFEST: &str = "[plugins.files]\nsource = \"files.wasm\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nsecrets = [\"api\"]\n\n[secrets.api]\nsource = \"file:api.token\"\ndestinations = [\"https://api.example.com\"]\ninject = { header = \"Authorization\", format = \"Bearer {}\" }\n";

#[test]
fn missing_secret_source_names_the_secret() {
    snapshot!("secret_missing_source", check(SECRET_MANIFEST));
}

#[test]
fn short_secret_is_refused_without_showing_it() {
    let dir = project(SECRET_MANIFEST);
    std::fs::write(dir.path().join("api.token"), "abc123\n").expect("write");
    let out = run_in(dir.path(), &["check", "portcullis.toml"]);
    assert!(!out.contains("abc123"), "{out}");
    snapshot!("secret_too_short", out);
}

#[test]
fn secret_sent_over_plain_http_is_refused() {
    snapshot!(
        "secret_plain_http",
        check(&SECRET_MANIFEST.replace("https://api", "http://api"))
    );
}

#[test]
fn check_warns_about_a_dangerous_folder_granted_with_unsafe_allow() {
    let dir = project("");
    let hash = run_in(dir.path(), &["hash", "files.wasm"]);
    let sha = hash
        .split_whitespace()
        .find(|w| w.len() == 64)
        .expect("a hash");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!("[plugins.files]\nsource = \"files.wasm\"\nsha256 = \"{sha}\"\ndirs = [{{ host = \"/proc\", guest = \"/proc\", unsafe_allow = \"reads cpu info\" }}]\n"),
    )
    .expect("write");
    let out = run_in(dir.path(), &["check", "portcullis.toml"]);
    assert!(out.contains("exit: Some(0)"), "{out}");
    assert!(
        out.contains("warning: plugin `files` is granted the dangerous folder `/proc`")
            && out.contains("reads cpu info"),
        "{out}"
    );
}

#[test]
fn check_warns_about_a_secret_of_fewer_than_16_bytes() {
    let dir = project("");
    let hash = run_in(dir.path(), &["hash", "files.wasm"]);
    let sha = hash
        .split_whitespace()
        .find(|w| w.len() == 64)
        .expect("a hash");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        SECRET_MANIFEST.replace(PIN, sha).replace(
            "secrets = [",
            "http = [\"https://api.example.com\"]\nsecrets = [",
        ),
    )
    .expect("write");
    std::fs::write(dir.path().join("api.token"), "abcdef123456\n").expect("write");
    let out = run_in(dir.path(), &["check", "portcullis.toml"]);
    assert!(out.contains("exit: Some(0)"), "{out}");
    assert!(
        out.contains("secret `api`") && out.contains("only 12 bytes"),
        "{out}"
    );
    assert!(!out.contains("abcdef123456"), "{out}");
}
