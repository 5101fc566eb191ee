//! `portcullis new`: the Rust scaffold goes from nothing to a pinned,
//! tested, callable plugin in five commands, in a temporary folder outside
//! this workspace (new, build, pin, test, call), as the README's "Write a
//! tool" section shows. Python and JavaScript scaffolds are checked for
//! their files (their builds install toolchains from PyPI and npm).

use std::path::Path;
use std::process::{Command, Output};

fn portcullis(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("PORTCULLIS_CACHE_DIR", cache)
        .output()
        .expect("run portcullis")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn the_rust_scaffold_builds_pins_tests_and_runs_outside_the_workspace() {
    let work = tempfile::tempdir().expect("temp dir");
    let cache = work.path().join("cache");
    let dir = work.path().join("elsewhere");
    let dir_str = dir.to_str().expect("utf-8");

    // 1. new
    ok(
        &portcullis(
            &["new", "hello", "--lang", "rust", "--dir", dir_str],
            &cache,
        ),
        "new",
    );
    let plugin = dir.join("hello");
    let manifest = plugin.join("portcullis.toml");
    let manifest = manifest.to_str().expect("utf-8");

    // 2. build (the scaffold's own script; the wasm target dir is kept
    // between runs of this test so that only the first run compiles the
    // dependencies)
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    let build = Command::new(plugin.join("build.sh"))
        .current_dir(work.path())
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run build.sh");
    ok(&build, "build.sh");
    assert!(plugin.join("hello.wasm").is_file());

    // 3. pin
    ok(&portcullis(&["pin", manifest], &cache), "pin");
    // 4. test
    let tested = ok(&portcullis(&["test", manifest], &cache), "test");
    assert_eq!(
        tested.lines().last(),
        Some("3 passed, 0 failed"),
        "{tested}"
    );
    // 5. call
    let called = ok(
        &portcullis(
            &["call", manifest, "hello.greet", r#"{"name": "Ada"}"#],
            &cache,
        ),
        "call",
    );
    assert_eq!(called.trim(), "\"Hello, Ada!\"");
}

#[test]
fn python_and_javascript_scaffolds_carry_the_wit_and_the_world_without_http() {
    let work = tempfile::tempdir().expect("temp dir");
    let cache = work.path().join("cache");
    let dir = work.path().to_str().expect("utf-8");
    for (lang, source) in [("python", "app.py"), ("js", "app.js")] {
        let name = format!("hello-{lang}");
        ok(
            &portcullis(&["new", &name, "--lang", lang, "--dir", dir], &cache),
            "new",
        );
        let plugin = work.path().join(&name);
        for file in [
            source,
            "build.sh",
            "wit/tool.wit",
            "portcullis.toml",
            "README.md",
        ] {
            assert!(plugin.join(file).is_file(), "{lang}: no {file}");
        }
        assert!(plugin.join(format!("tests/{name}.toml")).is_file());
        let build = std::fs::read_to_string(plugin.join("build.sh")).expect("build.sh");
        let build = if lang == "js" {
            std::fs::read_to_string(plugin.join("package.json")).expect("package.json")
        } else {
            build
        };
        assert!(build.contains("plugin-no-http"), "{lang}: {build}");
    }
    // Python's runtime imports wasi:sockets: its manifest opts in to the
    // deny-everything implementations.
    let manifest = std::fs::read_to_string(work.path().join("hello-python/portcullis.toml"))
        .expect("manifest");
    assert!(manifest.contains("deny_imports = [\"wasi:sockets/*\"]"));
}

#[test]
fn new_refuses_an_existing_folder_and_a_bad_name() {
    let work = tempfile::tempdir().expect("temp dir");
    let cache = work.path().join("cache");
    let dir = work.path().to_str().expect("utf-8");
    std::fs::create_dir(work.path().join("taken")).expect("mkdir");
    let out = portcullis(&["new", "taken", "--dir", dir], &cache);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("already exists"));
    let out = portcullis(&["new", "Bad Name", "--dir", dir], &cache);
    assert_eq!(out.status.code(), Some(3));
}
