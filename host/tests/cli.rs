//! The `portcullis` command: exit codes, stdout/stderr discipline, and the
//! `pin` rewrite. Uses the real binary and the bundled plugins (run
//! `plugins/build.sh` first; the README's test command does).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

fn bundled() -> PathBuf {
    let manifest = root().join("plugins/portcullis.toml");
    assert!(
        root().join("plugins/dist/files.wasm").is_file(),
        "run `plugins/build.sh` first (the README's test command does)"
    );
    manifest
}

/// One compile cache for this test binary (the first call compiles, the
/// rest load verified artifacts), never the user's own.
fn cache_dir() -> &'static Path {
    static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    CACHE
        .get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

fn portcullis(args: &[&str]) -> Output {
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

#[test]
fn help_documents_every_command_and_the_exit_codes() {
    let out = portcullis(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    const COMMANDS: [&str; 10] = [
        "hash", "pin", "check", "inspect", "tools", "call", "test", "new", "serve", "audit",
    ];
    for word in COMMANDS.iter().chain(&["Exit codes"]) {
        assert!(help.contains(word), "--help lacks `{word}`:\n{help}");
    }
    for command in COMMANDS {
        let out = portcullis(&[command, "--help"]);
        assert!(out.status.success(), "`{command} --help` failed");
    }
}

#[test]
fn usage_errors_exit_with_code_2() {
    assert_eq!(portcullis(&["call"]).status.code(), Some(2));
    assert_eq!(portcullis(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn call_prints_only_the_output_on_stdout() {
    let manifest = bundled();
    let out = portcullis(&[
        "call",
        manifest.to_str().expect("utf-8"),
        "files.list_dir",
        r#"{"path": "/sample"}"#,
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let value: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is exactly the output JSON");
    assert!(value.to_string().contains("hello.txt"), "{value}");
}

#[test]
fn tool_error_exits_with_code_1() {
    let manifest = bundled();
    let out = portcullis(&[
        "call",
        manifest.to_str().expect("utf-8"),
        "files.read_file",
        r#"{"path": "/sample/no-such-file.txt"}"#,
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).starts_with("error: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn refused_calls_exit_with_code_4_and_a_hint() {
    let manifest = bundled();
    let manifest = manifest.to_str().expect("utf-8");
    let out = portcullis(&["call", manifest, "files.read_file", r#"{"path": 1}"#]);
    assert_eq!(out.status.code(), Some(4), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("/path"), "{}", text(&out.stderr));

    let out = portcullis(&["call", manifest, "files.nope", "{}"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("hint: available tools: ") && stderr.contains("files.read_file"),
        "{stderr}"
    );
}

#[test]
fn configuration_errors_exit_with_code_3_naming_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("portcullis.toml");
    std::fs::write(
        &manifest,
        "[plugins.files]\nsource = \"x.wasm\"\nsha256 = \"00\"\nnetwork = \"anywhere\"\n",
    )
    .expect("write");
    let out = portcullis(&["check", manifest.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown field `network`"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn check_describes_grants_in_plain_words() {
    let manifest = bundled();
    let out = portcullis(&["check", manifest.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("reads "), "{stdout}");
    assert!(stdout.contains("(as /sample)"), "{stdout}");
    assert!(stdout.contains("network   none"), "{stdout}");
    assert!(stdout.contains("files.read_file"), "{stdout}");
}

#[test]
fn pin_rewrites_stale_pins_and_keeps_comments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("portcullis.toml");
    let component = root().join("plugins/dist/files.wasm");
    assert!(component.is_file(), "run `plugins/build.sh` first");
    let original = format!(
        "# my comment\n[plugins.files]\nsource = {:?}\nsha256 = \"{}\" # stale\n",
        component.to_str().expect("utf-8"),
        "ab".repeat(32)
    );
    std::fs::write(&manifest, &original).expect("write");
    let path = manifest.to_str().expect("utf-8");

    let check = portcullis(&["pin", "--check", path]);
    assert_eq!(check.status.code(), Some(3), "{}", text(&check.stderr));
    assert_eq!(std::fs::read_to_string(&manifest).expect("read"), original);

    let pin = portcullis(&["pin", path]);
    assert_eq!(pin.status.code(), Some(0), "{}", text(&pin.stderr));
    let rewritten = std::fs::read_to_string(&manifest).expect("read");
    let hash = portcullis(&["hash", component.to_str().expect("utf-8")]);
    let sha = text(&hash.stdout)
        .split_whitespace()
        .next()
        .expect("hash")
        .to_string();
    assert!(rewritten.contains(&sha), "{rewritten}");
    assert!(rewritten.starts_with("# my comment\n"), "{rewritten}");
    assert!(!rewritten.contains(&"ab".repeat(32)));

    assert_eq!(portcullis(&["pin", "--check", path]).status.code(), Some(0));
    assert_eq!(portcullis(&["check", path]).status.code(), Some(0));
}

#[test]
fn wrong_pin_exits_with_code_3_showing_both_hashes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("portcullis.toml");
    let component = root().join("plugins/dist/files.wasm");
    std::fs::write(
        &manifest,
        format!(
            "[plugins.files]\nsource = {:?}\nsha256 = \"{}\"\n",
            component.to_str().expect("utf-8"),
            "cd".repeat(32)
        ),
    )
    .expect("write");
    let out = portcullis(&[
        "call",
        manifest.to_str().expect("utf-8"),
        "files.list_dir",
        "{}",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("expected: cdcd"), "{stderr}");
    assert!(stderr.contains("actual:"), "{stderr}");
    assert!(stderr.contains("portcullis pin"), "{stderr}");
}

#[test]
fn tools_in_anthropic_format_follow_the_name_and_schema_rules() {
    let manifest = bundled();
    let out = portcullis(&[
        "tools",
        manifest.to_str().expect("utf-8"),
        "--format",
        "anthropic",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let tools: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let tools = tools.as_array().expect("array");
    assert!(!tools.is_empty());
    for tool in tools {
        let name = tool["name"].as_str().expect("name");
        assert!(
            (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "`{name}` breaks Anthropic's name pattern"
        );
        assert_eq!(tool["input_schema"]["type"], "object", "{tool}");
        assert!(tool["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
}

#[test]
fn tools_in_every_format_is_valid_json() {
    let manifest = bundled();
    for format in ["json", "anthropic", "openai", "openai-responses", "mcp"] {
        let out = portcullis(&[
            "tools",
            manifest.to_str().expect("utf-8"),
            "--format",
            format,
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{format}: {}",
            text(&out.stderr)
        );
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert!(value.as_array().is_some_and(|a| !a.is_empty()), "{format}");
    }
    let out = portcullis(&[
        "tools",
        manifest.to_str().expect("utf-8"),
        "--format",
        "yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn inspect_lists_imports_and_refuses_sockets() {
    let sockets = root().join("plugins/dist/sockets.wasm");
    let out = portcullis(&["inspect", sockets.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    // The mark in front of the first import whose name starts with `import`.
    let mark = |stdout: &str, import: &str| {
        stdout
            .lines()
            .find_map(|l| {
                l.trim()
                    .split_once(import)
                    .map(|(m, _)| m.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no import {import} in:\n{stdout}"))
    };
    assert_eq!(mark(&stdout, "wasi:sockets/tcp@"), "REFUSED");
    assert_eq!(mark(&stdout, "wasi:io/streams@"), "ok");

    // `wasi:http` is linked only with `http` grants, which only a manifest
    // gives: said so, neither ok nor refused.
    let wasihttp = root().join("plugins/dist/wasihttp.wasm");
    let out = portcullis(&["inspect", wasihttp.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        mark(&stdout, "wasi:http/outgoing-handler@"),
        "needs http grant"
    );
    assert_eq!(mark(&stdout, "wasi:io/streams@"), "ok");

    let files = root().join("plugins/dist/files.wasm");
    let out = portcullis(&["inspect", files.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("read_file"), "{stdout}");
    assert!(stdout.contains("tool list sha256"), "{stdout}");
}

#[test]
fn call_needing_approval_without_a_terminal_is_denied_with_exit_code_4() {
    let manifest = bundled();
    let manifest = manifest.to_str().expect("utf-8");
    let big = r#"{"order_id": "A-1", "amount": 250}"#;
    // `output()` gives the child no terminal: stdin is closed.
    let out = portcullis(&["call", manifest, "refunds.refund", big]);
    assert_eq!(out.status.code(), Some(4), "stderr: {}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("was not approved"), "{stderr}");
    assert!(stderr.contains("--approve"), "{stderr}");

    let out = portcullis(&["call", manifest, "refunds.refund", big, "--approve"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let small = r#"{"order_id": "A-1", "amount": 20}"#;
    let out = portcullis(&["call", manifest, "refunds.refund", small]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
}

#[test]
fn audit_verify_reports_tampering_and_truncation() {
    let manifest = bundled();
    let manifest = manifest.to_str().expect("utf-8");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let log_arg = log.to_str().expect("utf-8");
    for amount in [1, 2] {
        let args = format!(r#"{{"order_id": "A-1", "amount": {amount}}}"#);
        let out = portcullis(&[
            "call",
            manifest,
            "refunds.refund",
            &args,
            "--audit",
            log_arg,
        ]);
        assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    }
    let head = dir.path().join("head.json");
    let head_arg = head.to_str().expect("utf-8");
    let out = portcullis(&["audit", "verify", log_arg, "--write-head", head_arg]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // Two processes, one chain: the second continued the file's chain.
    assert!(
        stdout.contains("is intact") && stdout.contains("1 chain(s)"),
        "{stdout}"
    );
    let out = portcullis(&["audit", "head", log_arg]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let checkpoint = text(&out.stdout).trim().to_string();
    assert_eq!(checkpoint.split(':').count(), 3, "{checkpoint}");

    let original = std::fs::read_to_string(&log).expect("read");
    let edited = original.replacen("\"amount\\\": 1", "\"amount\\\": 9", 1);
    assert_ne!(edited, original);
    std::fs::write(&log, &edited).expect("write");
    let out = portcullis(&["audit", "verify", log_arg]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("edited"),
        "{}",
        text(&out.stderr)
    );

    // A whole invocation's lines removed (the first `call`: its loads,
    // start and end, half of the log) no longer verify clean.
    let lines: Vec<&str> = original.lines().collect();
    let half = lines.len() / 2;
    assert!(
        lines[half].contains(r#""event":"plugin_loaded""#),
        "{original}"
    );
    std::fs::write(&log, lines[half..].join("\n") + "\n").expect("write");
    let out = portcullis(&["audit", "verify", log_arg]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("deleted"),
        "{}",
        text(&out.stderr)
    );
    // The last invocation removed: only the checkpoint sees it, inline or
    // from the file.
    std::fs::write(&log, lines[..half].join("\n") + "\n").expect("write");
    assert_eq!(
        portcullis(&["audit", "verify", log_arg]).status.code(),
        Some(0)
    );
    let out = portcullis(&["audit", "verify", log_arg, "--head", &checkpoint]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("truncated"),
        "{}",
        text(&out.stderr)
    );
    let mut cut: Vec<&str> = original.lines().collect();
    cut.pop();
    std::fs::write(&log, cut.join("\n") + "\n").expect("write");
    assert_eq!(
        portcullis(&["audit", "verify", log_arg]).status.code(),
        Some(0)
    );
    let out = portcullis(&["audit", "verify", log_arg, "--head", head_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("truncated"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn verbose_call_never_prints_a_secret_from_plugin_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let component = root().join("plugins/dist/hostile.wasm");
    assert!(component.is_file(), "run `plugins/build.sh` first");
    let sha = portcullis::sha256_hex(&std::fs::read(&component).expect("read"));
    // A secret equal to one line `log_flood` logs, standing in for a value
    // an upstream echoed.
    std::fs::write(dir.path().join("line.secret"), "message 7\n").expect("write");
    let manifest = dir.path().join("portcullis.toml");
    std::fs::write(
        &manifest,
        format!(
            "[plugins.hostile]\nsource = {:?}\nsha256 = \"{sha}\"\nhttp = [\"https://api.example.com\"]\nsecrets = [\"line\"]\n\n\
             [secrets.line]\nsource = \"file:line.secret\"\ndestinations = [\"https://api.example.com\"]\n\
             inject = {{ header = \"X-Api-Key\" }}\n",
            component.to_str().expect("utf-8")
        ),
    )
    .expect("write");
    let manifest = manifest.to_str().expect("utf-8");
    let out = portcullis(&[
        "-v",
        "call",
        manifest,
        "hostile.log_flood",
        r#"{"bytes": 12}"#,
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("message 6"), "{stderr}");
    assert!(stderr.contains("[redacted:line]"), "{stderr}");
    assert!(!stderr.contains("message 7"), "{stderr}");

    let out = portcullis(&["check", manifest]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("secrets   line"),
        "{}",
        text(&out.stdout)
    );
}

/// Serves one HTML page on a loopback port, to every connection, until the
/// test ends.
fn serve_page() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = "<html><head><title>Local</title></head><body><h1>Hello</h1><p>from loopback</p></body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A manifest next to the bundled one's components, granting `fetch` one
/// loopback server through the explicit opt-in.
fn loopback_fetch_manifest(dir: &Path, port: u16, allow_private: bool) -> PathBuf {
    let bundled = std::fs::read_to_string(bundled()).expect("bundled manifest");
    let sha = bundled
        .split("[plugins.fetch]")
        .nth(1)
        .and_then(|rest| rest.split("sha256 = \"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("the bundled manifest pins fetch")
        .to_string();
    let manifest = dir.join("portcullis.toml");
    let source = root().join("plugins/dist/fetch.wasm");
    std::fs::write(
        &manifest,
        format!(
            "[plugins.fetch]\nsource = \"{}\"\nsha256 = \"{sha}\"\nhttp = [{{ url = \"http://127.0.0.1:{port}\", allow_private = {allow_private} }}]\n",
            source.display()
        ),
    )
    .expect("write manifest");
    manifest
}

#[test]
fn call_runs_fetch_against_a_loopback_server_granted_by_opt_in() {
    let port = serve_page();
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = loopback_fetch_manifest(dir.path(), port, true);
    let manifest = manifest.to_str().expect("utf-8 path");
    let url = format!("{{\"url\": \"http://127.0.0.1:{port}/\"}}");
    let out = portcullis(&["call", manifest, "fetch.fetch", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(value["title"], "Local");
    assert_eq!(value["content"], "# Hello\n\nfrom loopback");

    // Without the opt-in, the same loopback address is refused.
    let manifest = loopback_fetch_manifest(dir.path(), port, false);
    let out = portcullis(&[
        "call",
        manifest.to_str().expect("utf-8"),
        "fetch.fetch",
        &url,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("blocked range: loopback"), "{stderr}");
}

#[test]
fn check_warns_when_a_plugin_reads_local_data_and_has_egress() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("docs")).expect("mkdir");
    let sha = {
        let out = portcullis(&[
            "hash",
            root()
                .join("plugins/dist/fetch.wasm")
                .to_str()
                .expect("utf-8"),
        ]);
        text(&out.stdout)
            .split_whitespace()
            .next()
            .expect("hash")
            .to_string()
    };
    let manifest = dir.path().join("portcullis.toml");
    std::fs::write(
        &manifest,
        format!(
            "[plugins.fetch]\nsource = \"{}\"\nsha256 = \"{sha}\"\ndirs = [{{ host = \"docs\", guest = \"/docs\" }}]\nhttp = [\"https://example.com\"]\n",
            root().join("plugins/dist/fetch.wasm").display()
        ),
    )
    .expect("write");
    let out = portcullis(&["check", manifest.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: plugin `fetch` can read local data (`dirs`: /docs) and send data out (`http`: https://example.com:443)"),
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("network   https://example.com:443"));
}

#[test]
fn call_writes_a_core_dump_when_asked_and_the_plugin_traps() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = hostile_manifest(dir.path());
    let dumps = dir.path().join("dumps");
    let out = portcullis(&[
        "call",
        manifest.to_str().expect("utf-8"),
        "hostile.panic",
        "--core-dump",
        dumps.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(4), "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("core dump: "), "{stderr}");
    let files: Vec<_> = std::fs::read_dir(&dumps)
        .expect("the dump directory exists")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let dump = std::fs::read(&files[0]).expect("read the dump");
    // A WebAssembly module (the core dump format) with a `core` section.
    assert!(dump.starts_with(b"\0asm"), "not a wasm file");
    assert!(
        dump.windows(4).any(|w| w == b"core"),
        "no core dump section"
    );
    // The error names the file; the directory is the operator's own.
    let name = files[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name");
    assert!(
        name.starts_with("hostile-") && name.ends_with(".coredump"),
        "{name}"
    );
    assert!(stderr.contains(&format!("(core dump: {name})")), "{stderr}");

    // Without the flag, nothing is written and the error names no dump.
    let out = portcullis(&["call", manifest.to_str().expect("utf-8"), "hostile.panic"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        !text(&out.stderr).contains("core dump"),
        "{}",
        text(&out.stderr)
    );
}

/// A manifest in `dir` for the `hostile` test plugin, with no grants.
fn hostile_manifest(dir: &Path) -> PathBuf {
    let component = root().join("plugins/dist/hostile.wasm");
    assert!(component.is_file(), "run `plugins/build.sh` first");
    let sha = portcullis::sha256_hex(&std::fs::read(&component).expect("read"));
    let manifest = dir.join("portcullis.toml");
    std::fs::write(
        &manifest,
        format!(
            "[plugins.hostile]\nsource = {:?}\nsha256 = \"{sha}\"\n",
            component.to_str().expect("utf-8")
        ),
    )
    .expect("write");
    manifest
}

/// Characters that must never reach an operator's terminal raw: escape
/// (ANSI/OSC), bell, DEL, C1 CSI, a bidirectional override.
const RAW_CONTROLS: [char; 5] = ['\u{1b}', '\u{7}', '\u{7f}', '\u{9b}', '\u{202e}'];

fn has_raw_controls(text: &str) -> bool {
    text.chars().any(|c| RAW_CONTROLS.contains(&c))
}

#[test]
fn errors_reach_the_terminal_with_control_characters_escaped() {
    let manifest = bundled();
    let tool = "\u{1b}]8;;http://evil.example\u{7}click\u{1b}]8;;\u{7}\u{9b}2J\u{202e}";
    let out = portcullis(&["call", manifest.to_str().expect("utf-8"), tool]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = text(&out.stderr);
    assert!(!has_raw_controls(&stderr), "{stderr:?}");
    // Escaped, not removed: the operator sees what was there.
    assert!(
        stderr.contains("\\u{1b}]8;;http://evil.example"),
        "{stderr}"
    );
}

#[test]
fn outputs_on_stdout_are_the_same_json_without_raw_control_characters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = hostile_manifest(dir.path());
    let arguments = serde_json::json!({"text": "a\u{7f}b\u{9b}31mc\u{202e}d\u{1b}[2J"}).to_string();
    let out = portcullis(&[
        "call",
        manifest.to_str().expect("utf-8"),
        "hostile.echo",
        &arguments,
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!has_raw_controls(&stdout), "{stdout:?}");
    // The same value: `echo` returns its arguments' text as a string.
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(value, serde_json::Value::String(arguments));
}

#[test]
fn log_lines_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let manifest = bundled();
    for verbosity in ["-v", "-vv"] {
        let out = portcullis(&[
            verbosity,
            "call",
            manifest.to_str().expect("utf-8"),
            "files.list_dir",
            r#"{"path": "/sample"}"#,
        ]);
        assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("DEBUG"),
            "{verbosity} shows debug lines: {stderr}"
        );
        assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    }
}
#[test]
fn repin_of_a_changed_tool_list_shows_the_diff_and_needs_accept_tool_changes() {
    // Reproduction 7 of issue 12: `pin` printed only `updated <sha>` for a
    // component whose tool description changed.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        bundled().with_file_name("dist/files.wasm"),
        dir.path().join("files.wasm"),
    )
    .expect("copy");
    let manifest = dir.path().join("portcullis.toml");
    std::fs::write(&manifest, "[plugins.files]\nsource = \"files.wasm\"\n").expect("write");
    let m = manifest.to_str().expect("utf-8");
    let out = portcullis(&["pin", m]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("tools pinned"),
        "{}",
        text(&out.stdout)
    );
    // Pretend the pinned list said something else for `read_file`.
    let lock_path = dir.path().join("portcullis.tools.json");
    let mut lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lock_path).expect("lock")).expect("json");
    let current = portcullis::tool_list_hash(&lock["files"]);
    for tool in lock["files"].as_array_mut().expect("list") {
        if tool["name"] == "read_file" {
            tool["description"] = "Reads a file you name.".into();
        }
    }
    let old = portcullis::tool_list_hash(&lock["files"]);
    std::fs::write(&lock_path, lock.to_string()).expect("write lock");
    let pinned = std::fs::read_to_string(&manifest)
        .expect("manifest")
        .replace(&current, &old);
    std::fs::write(&manifest, &pinned).expect("write");

    let out = portcullis(&["pin", m]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("~ tool `read_file`: description changed")
            && stdout.contains("Reads a file you name."),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("--accept-tool-changes"));
    assert_eq!(
        std::fs::read_to_string(&manifest).expect("manifest"),
        pinned,
        "nothing written"
    );

    let out = portcullis(&["pin", "--accept-tool-changes", m]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        std::fs::read_to_string(&manifest)
            .expect("manifest")
            .contains(&current)
    );
}
