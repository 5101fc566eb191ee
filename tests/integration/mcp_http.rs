//! `portcullis serve --http`: the real binary on a loopback port, driven
//! by a dependency-free HTTP/1.1 client (one request per connection). Both
//! protocol eras round trip; a missing or wrong token, a foreign `Origin`,
//! a `Host` that does not name the server, an oversized body and a too
//! deeply nested one are refused (and recorded); two servers sharing a
//! `--state-key` file accept each other's sealed `requestState`; a public
//! address without a token refuses to start.

use super::mcp::{Setup, assert_audit_verifies, call_started, meta_2026, portcullis_bin, records};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The token the tests' servers admit, and its name.
pub(crate) const TOKEN: &str = "0123456789abcdef-http-test";
pub(crate) const TOKEN_NAME: &str = "ci-agent";

/// A running `portcullis serve --http` and where it listens.
pub(crate) struct HttpServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub(crate) addr: String,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HttpServer {
    /// Serves `setup`'s manifest on a free loopback port with the test
    /// token, plus `extra` arguments.
    pub(crate) fn start(setup: &Setup, extra: &[&str]) -> HttpServer {
        let mut child = Command::new(portcullis_bin())
            .arg("serve")
            .arg(setup.manifest())
            .args(["--http", "127.0.0.1:0"])
            .args(extra)
            .env("PORTCULLIS_MCP_TOKEN", format!("{TOKEN_NAME}:{TOKEN}"))
            .env("PORTCULLIS_CACHE_DIR", setup.dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("portcullis serve starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            let read = stderr.read_line(&mut line).expect("stderr");
            assert!(read > 0, "the server ended before listening");
            if let Some(rest) = line
                .trim()
                .strip_prefix("portcullis: serving MCP over HTTP at http://")
            {
                break rest.trim_end_matches("/mcp").to_string();
            }
        };
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = stderr.read_to_string(&mut sink);
        });
        HttpServer { child, addr }
    }

    /// Ends the server with SIGTERM-like kill and waits.
    pub(crate) fn stop(self) {
        drop(self);
    }
}

/// An HTTP response, with its JSON-RPC messages (from a JSON body or the
/// `data:` lines of an event stream).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub(crate) fn messages(&self) -> Vec<Value> {
        if let Ok(value) = serde_json::from_str::<Value>(&self.body) {
            return vec![value];
        }
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    }

    /// The response to request `id`.
    pub(crate) fn response(&self, id: u64) -> Value {
        self.messages()
            .into_iter()
            .find(|m| m["id"] == json!(id))
            .unwrap_or_else(|| panic!("no response to {id}: {self:?}"))
    }
}

/// Sends one request on a fresh connection and reads the whole response.
pub(crate) fn send(addr: &str, method: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    // A guard against a hung server, not a timed assertion.
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut head = format!("{method} /mcp HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).expect("write head");
    // The server may answer (and close) before reading a refused body.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Reply {
        status,
        head: head.to_string(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// The headers of an authenticated MCP POST.
fn authorized() -> String {
    format!("Bearer {TOKEN}")
}

/// A 2026-07-28 request: the method headers and the per-request `_meta`.
pub(crate) fn post_2026(addr: &str, id: u64, method: &str, mut params: Value) -> Reply {
    params["_meta"] = meta_2026();
    post_2026_raw(addr, id, method, params)
}

fn post_2026_raw(addr: &str, id: u64, method: &str, params: Value) -> Reply {
    let auth = authorized();
    let name = params["name"].as_str().map(str::to_string);
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", method),
    ];
    if let Some(name) = &name {
        headers.push(("Mcp-Name", name));
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    send(addr, "POST", &headers, body.to_string().as_bytes())
}

/// A legacy request in session `session` (none for `initialize`).
fn post_legacy(addr: &str, session: Option<&str>, message: &Value) -> Reply {
    post_legacy_as(addr, &authorized(), session, message)
}

fn post_legacy_as(addr: &str, auth: &str, session: Option<&str>, message: &Value) -> Reply {
    let mut headers = vec![
        ("Authorization", auth),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    if let Some(session) = session {
        headers.push(("Mcp-Session-Id", session));
        headers.push(("MCP-Protocol-Version", "2025-11-25"));
    }
    send(addr, "POST", &headers, message.to_string().as_bytes())
}

fn audit(setup: &Setup) -> String {
    std::fs::read_to_string(setup.audit()).expect("audit log")
}

#[test]
fn http_list_and_call_round_trip_in_the_2026_era_with_the_token_name_as_caller() {
    let setup = Setup::new();
    let server = HttpServer::start(&setup, &[]);
    let listed = post_2026(&server.addr, 1, "tools/list", json!({}));
    assert_eq!(listed.status, 200, "{listed:?}");
    let tools = listed.response(1)["result"]["tools"].clone();
    assert!(
        tools
            .as_array()
            .expect("tools")
            .iter()
            .any(|t| t["name"] == "json.length"),
        "{tools}"
    );
    let called = post_2026(
        &server.addr,
        2,
        "tools/call",
        json!({"name": "json.length", "arguments": {"value": [1, 2, 3]}}),
    );
    let result = &called.response(2)["result"];
    assert_eq!(result["structuredContent"], 3, "{called:?}");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .expect("text")
            .starts_with("<untrusted-tool-output-"),
        "{result}"
    );
    server.stop();
    let started = call_started(&setup.audit());
    assert_eq!(started["transport"], "http", "{started}");
    assert_eq!(started["protocol_version"], "2026-07-28", "{started}");
    assert_eq!(started["client_name"], "pipe-test", "{started}");
    assert_eq!(started["authenticated"], TOKEN_NAME, "{started}");
    assert_eq!(started["caller"], TOKEN_NAME, "{started}");
    let log = audit(&setup);
    assert!(!log.contains(TOKEN), "the token's secret is never recorded");
    assert_audit_verifies(&setup.audit());
}

#[test]
fn http_list_and_call_round_trip_in_the_legacy_era_with_a_session() {
    let setup = Setup::new();
    let server = HttpServer::start(&setup, &[]);
    let init = post_legacy(
        &server.addr,
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "http-test", "version": "1.0"},
        }}),
    );
    assert_eq!(init.status, 200, "{init:?}");
    assert_eq!(
        init.response(1)["result"]["protocolVersion"],
        "2025-11-25",
        "{init:?}"
    );
    let session = init.header("mcp-session-id").expect("a legacy session");
    let initialized = post_legacy(
        &server.addr,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    assert_eq!(initialized.status, 202, "{initialized:?}");
    let listed = post_legacy(
        &server.addr,
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}),
    );
    assert!(
        listed.response(2)["result"]["tools"].is_array(),
        "{listed:?}"
    );
    let called = post_legacy(
        &server.addr,
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "json.length", "arguments": {"value": [1, 2]},
        }}),
    );
    let result = &called.response(3)["result"];
    assert_eq!(result["isError"], false, "{called:?}");
    server.stop();
    let started = call_started(&setup.audit());
    assert_eq!(started["transport"], "http", "{started}");
    assert_eq!(started["protocol_version"], "2025-11-25", "{started}");
    assert_eq!(started["client_name"], "http-test", "{started}");
    assert_eq!(started["client_version"], "1.0", "{started}");
    assert_eq!(started["authenticated"], TOKEN_NAME, "{started}");
}

/// A `tools/list` with these headers instead of the good ones.
fn list_with(addr: &str, headers: &[(&str, &str)]) -> Reply {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta_2026()}});
    let mut all = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/list"),
    ];
    all.extend_from_slice(headers);
    send(addr, "POST", &all, body.to_string().as_bytes())
}

#[test]
fn http_request_without_the_token_or_with_a_wrong_one_is_refused_401_and_audited() {
    let setup = Setup::new();
    let server = HttpServer::start(&setup, &[]);
    let missing = list_with(&server.addr, &[]);
    assert_eq!(missing.status, 401, "{missing:?}");
    assert!(
        missing
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{missing:?}"
    );
    let wrong = list_with(
        &server.addr,
        &[("Authorization", "Bearer 0123456789abcdef-http-tesT")],
    );
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let basic = list_with(
        &server.addr,
        &[("Authorization", &format!("Basic {TOKEN}"))],
    );
    assert_eq!(basic.status, 401, "{basic:?}");
    let auth = authorized();
    let right = list_with(&server.addr, &[("Authorization", &auth)]);
    assert_eq!(right.status, 200, "{right:?}");
    server.stop();
    let log = audit(&setup);
    assert_eq!(
        log.matches("\"event\":\"http_refused\"").count(),
        3,
        "{log}"
    );
    assert!(log.contains("a valid bearer token is required"), "{log}");
}

#[test]
fn http_request_from_a_foreign_origin_is_refused_403_even_with_the_token() {
    let setup = Setup::new();
    let server = HttpServer::start(&setup, &["--allow-origin", "https://app.example"]);
    let auth = authorized();
    let foreign = list_with(
        &server.addr,
        &[("Authorization", &auth), ("Origin", "https://evil.example")],
    );
    assert_eq!(foreign.status, 403, "{foreign:?}");
    let null = list_with(
        &server.addr,
        &[("Authorization", &auth), ("Origin", "null")],
    );
    assert_eq!(null.status, 403, "{null:?}");
    let allowed = list_with(
        &server.addr,
        &[("Authorization", &auth), ("Origin", "https://app.example")],
    );
    assert_eq!(allowed.status, 200, "{allowed:?}");
    server.stop();
    let log = audit(&setup);
    assert!(log.contains("the Origin is not allowed"), "{log}");
}

#[test]
fn http_request_whose_host_header_names_another_server_is_refused_dns_rebinding() {
    let setup = Setup::new();
    let server = HttpServer::start(&setup, &[]);
    let auth = authorized();
    let port = server.addr.rsplit_once(':').expect("port").1.to_string();
    let rebound = format!("attacker.example:{port}");
    let refused = list_with(
        &server.addr,
        &[("Authorization", &auth), ("Host", &rebound)],
    );
    assert_eq!(refused.status, 403, "{refused:?}");
    let other_port = list_with(
        &server.addr,
        &[("Authorization", &auth), ("Host", "127.0.0.1:1")],
    );
    assert_eq!(other_port.status, 403, "{other_port:?}");
    let localhost = format!("localhost:{port}");
    let fine = list_with(
        &server.addr,
        &[("Authorization", &auth), ("Host", &localhost)],
    );
    assert_eq!(fine.status, 200, "{fine:?}");
    server.stop();
    let log = audit(&setup);
    assert!(
        log.contains("the Host header does not name this server"),
        "{log}"
    );
}

#[test]
fn http_oversized_body_is_refused_413_and_audited() {
    let setup = Setup::new();
    let server = HttpServer::start(&setup, &[]);
    let auth = authorized();
    let padding = "x".repeat(portcullis::DEFAULT_MAX_BODY_BYTES + 1);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "_meta": meta_2026(), "name": "json.length", "arguments": {"value": padding},
    }});
    let reply = send(
        &server.addr,
        "POST",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 413, "{reply:?}");
    server.stop();
    let log = audit(&setup);
    assert!(log.contains("\"status\":413"), "{log}");
    assert!(!log.contains("\"event\":\"call_started\""), "{log}");
}

#[test]
fn http_too_deeply_nested_json_is_refused_before_parsing() {
    let setup = Setup::new();
    let server = HttpServer::start(&setup, &[]);
    let depth = portcullis::DEFAULT_MAX_JSON_DEPTH + 1;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"json.length","arguments":{{"value":{nested}}}}}}}"#
    );
    let auth = authorized();
    let reply = send(
        &server.addr,
        "POST",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.body.contains("nests deeper than"), "{reply:?}");
    server.stop();
    let log = audit(&setup);
    assert!(log.contains("nests deeper than"), "{log}");
    assert!(!log.contains("\"event\":\"call_started\""), "{log}");
}

/// The 2026-07-28 `_meta` of a client that can elicit.
fn meta_eliciting() -> Value {
    let mut meta = meta_2026();
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({"elicitation": {}});
    meta
}

/// A `hostile.wipe` call that needs approval; `retry` = (state, action).
fn wipe(addr: &str, id: u64, retry: Option<(&str, &str)>) -> Value {
    let mut params = json!({"_meta": meta_eliciting(), "name": "hostile.wipe", "arguments": {}});
    if let Some((state, action)) = retry {
        params["requestState"] = json!(state);
        params["inputResponses"] = json!({"approval": {"action": action}});
    }
    post_2026_raw(addr, id, "tools/call", params).response(id)
}

fn sealed_state(response: &Value) -> String {
    let result = &response["result"];
    assert_eq!(result["resultType"], "input_required", "{response}");
    result["requestState"]
        .as_str()
        .expect("requestState")
        .to_string()
}

#[test]
fn http_servers_sharing_a_state_key_accept_each_others_request_state() {
    let setup = Setup::new();
    let key = setup.dir.path().join("state.key");
    std::fs::write(&key, [42u8; 32]).expect("key");
    let key = key.to_str().expect("utf-8 path");
    let a = HttpServer::start(&setup, &["--state-key", key]);
    let b = HttpServer::start(&setup, &["--state-key", key]);
    // Sealed by A, answered at B; then the other way round.
    let state = sealed_state(&wipe(&a.addr, 1, None));
    let done = wipe(&b.addr, 2, Some((&state, "accept")));
    assert_ne!(done["result"]["isError"], true, "{done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    let state = sealed_state(&wipe(&b.addr, 3, None));
    let done = wipe(&a.addr, 4, Some((&state, "accept")));
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    // A server with another key refuses it.
    let c = HttpServer::start(&setup, &[]);
    let state = sealed_state(&wipe(&a.addr, 5, None));
    let refused = wipe(&c.addr, 6, Some((&state, "accept")));
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    for server in [a, b, c] {
        server.stop();
    }
    let approvals: Vec<Value> = records(&setup.audit())
        .into_iter()
        .filter(|r| r["event"] == "approval_decided" && r["approved"] == true)
        .collect();
    assert_eq!(approvals.len(), 2, "{approvals:?}");
    // A person approved through elicitation (the client's), not the
    // operator's approver.
    assert!(
        approvals.iter().all(|r| r["approver"] == "client"),
        "{approvals:?}"
    );
    assert_audit_verifies(&setup.audit());
}

/// Runs `command`, which must exit by itself: a server that started
/// instead of refusing is killed and fails the test (a guard against
/// hanging the suite, not a timed assertion).
fn refused_to_start(mut command: Command) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("portcullis serve runs");
    for _ in 0..1200 {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("output");
    panic!(
        "the server started instead of refusing: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn http_on_a_public_address_without_a_token_refuses_to_start() {
    let setup = Setup::new();
    let run = |args: &[&str]| {
        let mut command = Command::new(portcullis_bin());
        command
            .arg("serve")
            .arg(setup.manifest())
            .args(args)
            .env_remove("PORTCULLIS_MCP_TOKEN")
            .env("PORTCULLIS_CACHE_DIR", setup.dir.path().join("cache"));
        refused_to_start(command)
    };
    let public = run(&["--http", "0.0.0.0:0", "--no-token"]);
    let stderr = String::from_utf8_lossy(&public.stderr);
    assert_eq!(public.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    // On loopback too, serving without a token must be asked for.
    let unasked = run(&["--http", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&unasked.stderr);
    assert_eq!(unasked.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no bearer token"), "{stderr}");
}

#[test]
fn http_no_token_with_a_token_in_the_environment_refuses_to_start() {
    let setup = Setup::new();
    let mut command = Command::new(portcullis_bin());
    command
        .arg("serve")
        .arg(setup.manifest())
        .args(["--http", "127.0.0.1:0", "--no-token"])
        .env("PORTCULLIS_MCP_TOKEN", "ops:0123456789abcdef0123")
        .env("PORTCULLIS_CACHE_DIR", setup.dir.path().join("cache"));
    let refused = refused_to_start(command);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("conflicts with `PORTCULLIS_MCP_TOKEN`"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
    // Neither the token's secret nor its name is echoed.
    assert!(!stderr.contains("0123456789abcdef"), "{stderr}");
}

#[test]
fn http_a_call_with_a_progress_token_streams_its_progress_before_the_result() {
    let setup = Setup::new();
    let server = HttpServer::start(&setup, &[]);
    let mut meta = meta_2026();
    meta["progressToken"] = json!("p-http");
    let called = post_2026_raw(
        &server.addr,
        5,
        "tools/call",
        json!({"_meta": meta, "name": "json.length", "arguments": {"value": [1]}}),
    );
    let messages = called.messages();
    let progress = super::mcp::progress_before_response(&messages, "p-http", 5);
    super::mcp::assert_start_and_end(&progress);
    server.stop();
}

/// A `--token-file` in the setup's folder holding `lines`, with permission
/// bits `mode`.
#[cfg(unix)]
fn token_file(setup: &Setup, lines: &str, mode: u32) -> std::path::PathBuf {
    let tokens = setup.dir.path().join("tokens");
    std::fs::write(&tokens, lines).expect("tokens");
    set_mode(&tokens, mode);
    tokens
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(unix)]
#[test]
fn http_token_file_open_to_other_users_is_refused_and_a_private_one_admits_its_names() {
    let setup = Setup::new();
    let tokens = token_file(
        &setup,
        "# agents\nreviewer:0123456789abcdef-reviewer\n",
        0o644,
    );
    let mut command = Command::new(portcullis_bin());
    command
        .arg("serve")
        .arg(setup.manifest())
        .args(["--http", "127.0.0.1:0", "--token-file"])
        .arg(&tokens)
        .env_remove("PORTCULLIS_MCP_TOKEN");
    let refused = refused_to_start(command);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("open to other users"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    set_mode(&tokens, 0o600);
    let path = tokens.to_str().expect("utf-8");
    // Both tokens admit: the file's and the variable's.
    let server = HttpServer::start(&setup, &["--token-file", path]);
    let reviewer = list_with(
        &server.addr,
        &[("Authorization", "Bearer 0123456789abcdef-reviewer")],
    );
    assert_eq!(reviewer.status, 200, "{reviewer:?}");
    let auth = authorized();
    let agent = list_with(&server.addr, &[("Authorization", &auth)]);
    assert_eq!(agent.status, 200, "{agent:?}");
    server.stop();
}

#[cfg(unix)]
#[test]
fn http_a_legacy_session_serves_only_the_token_that_opened_it() {
    let setup = Setup::new();
    let tokens = token_file(&setup, "intruder:0123456789abcdef-intruder\n", 0o600);
    let server = HttpServer::start(&setup, &["--token-file", tokens.to_str().expect("utf-8")]);
    let init = post_legacy(
        &server.addr,
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "http-test", "version": "1.0"},
        }}),
    );
    let session = init.header("mcp-session-id").expect("a legacy session");
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let intruder = post_legacy_as(
        &server.addr,
        "Bearer 0123456789abcdef-intruder",
        Some(&session),
        &list,
    );
    assert_eq!(intruder.status, 404, "{intruder:?}");
    let owner = post_legacy(&server.addr, Some(&session), &list);
    assert_eq!(owner.status, 200, "{owner:?}");
    server.stop();
    let log = audit(&setup);
    assert!(
        log.contains("the session was opened with another token"),
        "{log}"
    );
}
