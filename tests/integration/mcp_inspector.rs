//! The MCP Inspector CLI (`@modelcontextprotocol/inspector` 2.12.0, pinned
//! with its whole tree in `tests/node/inspector/package-lock.json`) against
//! `portcullis serve`, as a second real client beside the Python one: over
//! stdio in both protocol eras (tool list with our `_meta` pins, a call with
//! `structuredContent`, a validation error as an `isError` result) and over
//! Streamable HTTP with and without the bearer token.
//!
//! The Inspector is installed with `npm ci --ignore-scripts` into
//! `$CARGO_TARGET_DIR/mcp-inspector` on first use (under a lock file, so
//! parallel tests install it once; a changed lockfile reinstalls it). It
//! needs Node >= 22.19: the machine's `node` when it is new enough, else the
//! pinned Node 22 binary package from `tests/node/runtime`, installed the
//! same way. When the install fails, the test fails under `CI=true` and is
//! skipped with a loud message otherwise (no npm, no network).
//!
//! Its documented exit codes (`clients/cli` of the package): 0 ok, 3 auth
//! required, 5 the tool returned `isError: true`.

use super::mcp::{Setup, assert_audit_verifies, call_started, portcullis_bin};
use super::mcp_http::{HttpServer, TOKEN, TOKEN_NAME};
use super::mcp_python::{run, target_dir};
use portcullis_tests::{plugin_sha, repo_root};
use serde_json::{Value, json};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The oldest Node the Inspector 2.12.0 runs on (its `engines` field).
const NODE_AT_LEAST: (u32, u32) = (22, 19);

/// How to run the installed Inspector.
struct Inspector {
    node: PathBuf,
    launcher: PathBuf,
}

/// The installed Inspector, installing it if needed; `None` (after a loud
/// message) when it cannot be installed outside CI.
fn inspector() -> Option<Inspector> {
    match install() {
        Ok(inspector) => Some(inspector),
        Err(reason) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the MCP Inspector could not be installed: {reason}")
        }
        Err(reason) => {
            eprintln!(
                "\n!!! SKIPPED: the MCP Inspector could not be installed: {reason}\n\
                 !!! (under CI=true this fails the test)\n"
            );
            None
        }
    }
}

fn install() -> Result<Inspector, String> {
    let target = target_dir();
    let root = target.join("mcp-inspector");
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    // One installer at a time; the others wait and then find it done.
    let lock = File::create(target.join("mcp-inspector.lock")).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| format!("locking: {e}"))?;
    let node = if system_node_is_new_enough() {
        PathBuf::from("node")
    } else {
        let runtime = npm_ci(&root, "runtime")?;
        let node = runtime.join("node_modules/.bin/node");
        if !node.is_file() {
            return Err(format!(
                "the machine's `node` is older than {}.{} and tests/node/runtime has no Node \
                 22 binary package for {}-{}",
                NODE_AT_LEAST.0,
                NODE_AT_LEAST.1,
                std::env::consts::OS,
                std::env::consts::ARCH
            ));
        }
        node
    };
    let launcher = npm_ci(&root, "inspector")?
        .join("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    if !launcher.is_file() {
        return Err(format!(
            "`{}` is missing after `npm ci`",
            launcher.display()
        ));
    }
    Ok(Inspector { node, launcher })
}

/// Whether `node` on `PATH` runs the Inspector (`v22.19.0` or later).
fn system_node_is_new_enough() -> bool {
    let Ok(output) = Command::new("node").arg("--version").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&output.stdout);
    let mut parts = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .map(|part| part.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => output.status.success() && (major, minor) >= NODE_AT_LEAST,
        _ => false,
    }
}

/// `npm ci --ignore-scripts` of `tests/node/NAME` into `root/NAME`, unless
/// that exact `package.json` and lockfile are installed there already.
fn npm_ci(root: &Path, name: &str) -> Result<PathBuf, String> {
    let source = repo_root().join("tests/node").join(name);
    let mut wanted = String::new();
    for file in ["package.json", "package-lock.json"] {
        let path = source.join(file);
        wanted +=
            &std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let dir = root.join(name);
    let stamp = dir.join("installed.stamp");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted)
        && dir.join("node_modules").is_dir()
    {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(source.join(file), dir.join(file)).map_err(|e| e.to_string())?;
    }
    // No package's install script runs: the Inspector's is a no-op outside
    // its own repository, and Node comes as a plain binary package.
    run(Command::new("npm")
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(&dir))?;
    std::fs::write(&stamp, wanted).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// What one Inspector CLI run printed.
struct Run {
    code: Option<i32>,
    /// The result as `--format json` prints it (`{"result": ...}`), or
    /// `Null` when stdout was empty.
    stdout: Value,
    stderr: String,
}

impl Inspector {
    /// `inspector --cli --format json -q ARGS`, with its home (catalog,
    /// stored OAuth) inside the test's own folder.
    fn run(&self, setup: &Setup, args: &[&str]) -> Run {
        let home = setup.dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        let output: Output = Command::new(&self.node)
            .arg(&self.launcher)
            .args(["--cli", "--format", "json", "-q"])
            .args(args)
            .env("HOME", &home)
            .current_dir(setup.dir.path())
            .output()
            .expect("the Inspector runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let stdout = if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}"))
        };
        Run {
            code: output.status.code(),
            stdout,
            stderr,
        }
    }

    /// A method against `portcullis serve MANIFEST` over stdio in `era`
    /// (`legacy` or `modern`).
    fn stdio(&self, setup: &Setup, era: &str, method: &[&str]) -> Run {
        let cache = format!(
            "PORTCULLIS_CACHE_DIR={}",
            setup.dir.path().join("cache").display()
        );
        let bin = portcullis_bin();
        let manifest = setup.manifest();
        let mut args = vec!["--protocol-era", era, "-e", &cache];
        args.extend_from_slice(method);
        args.extend([
            "--",
            bin.to_str().expect("a UTF-8 path"),
            "serve",
            manifest.to_str().expect("a UTF-8 path"),
        ]);
        self.run(setup, &args)
    }
}

/// The tool named `name` in a `tools/list` result.
fn tool<'a>(run: &'a Run, name: &str) -> &'a Value {
    run.stdout["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tool list: {}\n{}", run.stdout, run.stderr))
        .iter()
        .find(|tool| tool["name"] == name)
        .unwrap_or_else(|| panic!("`{name}` is not listed: {}", run.stdout))
}

/// Our `_meta` pins on a listed tool, as the Inspector received them.
fn assert_listed_with_our_pins(run: &Run) {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let length = tool(run, "json.length");
    let meta = &length["_meta"];
    assert_eq!(meta["dev.portcullis/plugin"], "json", "{meta}");
    assert_eq!(meta["dev.portcullis/plugin_sha256"], plugin_sha("json"));
    let list_sha = meta["dev.portcullis/tool_list_sha256"]
        .as_str()
        .expect("a tool-list sha256");
    assert_eq!(list_sha.len(), 64, "{meta}");
    assert_eq!(meta["dev.portcullis/effect"], "read", "{meta}");
    assert_eq!(meta["dev.portcullis/approval"], "never", "{meta}");
    assert_eq!(
        meta["dev.portcullis/grants"],
        json!({"dirs": [], "env": [], "network": [], "secrets": []})
    );
    assert_eq!(length["annotations"]["readOnlyHint"], true, "{length}");
    // What the host enforces for a destructive tool reaches the client too.
    let wipe = tool(run, "hostile.wipe");
    assert_eq!(wipe["annotations"]["destructiveHint"], true, "{wipe}");
    assert_eq!(wipe["_meta"]["dev.portcullis/approval"], "always", "{wipe}");
    assert_eq!(
        wipe["_meta"]["dev.portcullis/plugin_sha256"],
        plugin_sha("hostile")
    );
}

#[test]
fn inspector_lists_our_tools_with_their_pins_over_stdio_in_both_eras() {
    let Some(inspector) = inspector() else { return };
    let setup = Setup::new();
    for era in ["legacy", "modern"] {
        let listed = inspector.stdio(&setup, era, &["--method", "tools/list"]);
        assert_listed_with_our_pins(&listed);
    }
    assert_audit_verifies(&setup.audit());
}

#[test]
fn inspector_calls_a_tool_and_gets_structured_content_over_stdio() {
    let Some(inspector) = inspector() else { return };
    let setup = Setup::new();
    // 2026-07-28: any JSON value is structured content.
    let call = inspector.stdio(
        &setup,
        "modern",
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "json.length",
            "--tool-args-json",
            r#"{"value":[1,2,3]}"#,
        ],
    );
    assert_eq!(call.code, Some(0), "{}", call.stderr);
    let result = &call.stdout["result"];
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(result["structuredContent"], 3, "{result}");
    let text = result["content"][0]["text"].as_str().expect("a text block");
    assert!(text.starts_with("<untrusted-tool-output-"), "{text}");
    let provenance = &result["_meta"]["dev.portcullis/provenance"];
    assert_eq!(provenance["plugin_sha256"], plugin_sha("json"), "{result}");
    assert_eq!(provenance["trust"], "untrusted", "{result}");
    let started = call_started(&setup.audit());
    assert_eq!(started["client_name"], "inspector-cli", "{started}");
    assert_eq!(started["protocol_version"], "2026-07-28", "{started}");
    assert_eq!(started["transport"], "stdio", "{started}");

    // Legacy (2025-11-25): an object-valued result is structured content.
    let setup = Setup::new();
    let call = inspector.stdio(
        &setup,
        "legacy",
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "json.query",
            "--tool-args-json",
            r#"{"value":{"a":[1,2]},"path":"$.a[*]"}"#,
        ],
    );
    assert_eq!(call.code, Some(0), "{}", call.stderr);
    let result = &call.stdout["result"];
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(result["structuredContent"]["count"], 2, "{result}");
    assert_eq!(result["structuredContent"]["values"], json!([1, 2]));
    let started = call_started(&setup.audit());
    assert_eq!(started["protocol_version"], "2025-11-25", "{started}");
    assert_audit_verifies(&setup.audit());
}

#[test]
fn inspector_sees_a_validation_error_as_an_is_error_result_naming_the_field() {
    let Some(inspector) = inspector() else { return };
    for era in ["legacy", "modern"] {
        let setup = Setup::new();
        let call = inspector.stdio(
            &setup,
            era,
            &[
                "--method",
                "tools/call",
                "--tool-name",
                "json.query",
                "--tool-args-json",
                r#"{"value":1,"path":7}"#,
            ],
        );
        // 5: the tool returned `isError: true` (not a protocol error).
        assert_eq!(call.code, Some(5), "{}\n{}", call.stdout, call.stderr);
        assert!(call.stderr.contains("tool_is_error"), "{}", call.stderr);
        let result = &call.stdout["result"];
        assert_eq!(result["isError"], true, "{result}");
        let text = result["content"][0]["text"].as_str().expect("a text block");
        assert!(text.contains("`/path`"), "{text}");
        assert!(text.contains("hint:"), "{text}");
        assert_eq!(result["_meta"]["dev.portcullis/error"]["field"], "/path");
        assert_eq!(
            result["_meta"]["dev.portcullis/error"]["kind"],
            "invalid_arguments"
        );
        let everything = format!("{}{}", call.stdout, call.stderr);
        let folder = setup.dir.path().display().to_string();
        assert!(!everything.contains(&folder), "no host path: {everything}");
    }
}

/// Options that point the Inspector at `server` over Streamable HTTP and
/// never start an interactive OAuth login (it fails with `auth_required`).
fn http_args<'a>(url: &'a str, era: &'a str) -> Vec<&'a str> {
    vec![
        "--transport",
        "http",
        "--server-url",
        url,
        "--protocol-era",
        era,
        "--stored-auth-only",
    ]
}

#[test]
fn inspector_over_http_with_the_bearer_token_lists_and_calls_tools() {
    let Some(inspector) = inspector() else { return };
    let setup = Setup::new();
    let server = HttpServer::start(&setup, &[]);
    let url = format!("http://{}/mcp", server.addr);
    let bearer = format!("Authorization: Bearer {TOKEN}");
    for era in ["legacy", "modern"] {
        let mut args = http_args(&url, era);
        args.extend(["--header", &bearer, "--method", "tools/list"]);
        assert_listed_with_our_pins(&inspector.run(&setup, &args));
    }
    let mut args = http_args(&url, "modern");
    args.extend([
        "--header",
        &bearer,
        "--method",
        "tools/call",
        "--tool-name",
        "json.length",
        "--tool-args-json",
        r#"{"value":"four"}"#,
    ]);
    let call = inspector.run(&setup, &args);
    server.stop();
    assert_eq!(call.code, Some(0), "{}", call.stderr);
    assert_eq!(call.stdout["result"]["structuredContent"], 4);
    let started = call_started(&setup.audit());
    assert_eq!(started["transport"], "http", "{started}");
    assert_eq!(started["authenticated"], TOKEN_NAME, "{started}");
    assert_eq!(started["client_name"], "inspector-cli", "{started}");
    assert_audit_verifies(&setup.audit());
}

#[test]
fn inspector_over_http_without_the_token_is_refused() {
    let Some(inspector) = inspector() else { return };
    let setup = Setup::new();
    let server = HttpServer::start(&setup, &[]);
    let url = format!("http://{}/mcp", server.addr);
    let wrong = "Authorization: Bearer not-the-token";
    for header in [None, Some(wrong)] {
        let mut args = http_args(&url, "legacy");
        if let Some(header) = header {
            args.extend(["--header", header]);
        }
        args.extend(["--method", "tools/list"]);
        let listed = inspector.run(&setup, &args);
        assert!(
            listed.stdout.is_null(),
            "a tool list reached a client without a valid token"
        );
        // 3: auth required.
        assert_eq!(listed.code, Some(3), "{}", listed.stderr);
        assert!(listed.stderr.contains("auth_required"), "{}", listed.stderr);
        assert!(
            listed.stderr.contains("a valid bearer token is required"),
            "{}",
            listed.stderr
        );
    }
    server.stop();
    let log = std::fs::read_to_string(setup.audit()).expect("audit log");
    let refused = log
        .lines()
        .filter(|line| line.contains("\"event\":\"http_refused\"") && line.contains("401"))
        .count();
    assert!(refused >= 2, "both refusals are audited: {log}");
    assert!(!log.contains("\"event\":\"call_started\""), "{log}");
    assert_audit_verifies(&setup.audit());
}
