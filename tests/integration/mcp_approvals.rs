//! Approvals through MCP: a call that needs approval asks the client's
//! user (legacy: `elicitation/create`; 2026-07-28: an `input_required`
//! result with a sealed `requestState`), runs only on an accepting answer
//! bound to that call, and every answer is audited. Driven through a pipe
//! (no client library), plus the per-call approver the server is built on,
//! at library level.

use super::mcp::{Server, Setup, meta_2026};
use portcullis::{ApprovalRequest, Approver, CallContext, Decision, Error, Host, PluginConfig};
use portcullis_tests::{plugin_path, plugin_sha};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The legacy handshake, declaring the elicitation capability.
fn initialize_with_elicitation(server: &mut Server) {
    let init = server.request(
        "initialize",
        json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "pipe-test", "version": "1.0"},
        }),
    );
    assert!(init["result"].is_object(), "{init}");
    server.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
}

/// Calls `tool` (legacy) and answers the server's `elicitation/create`
/// with `action`; returns the elicitation's params and the call's response.
fn call_answering(server: &mut Server, tool: &str, action: &str) -> (Value, Value) {
    let id = 9_001;
    server.send(&json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": {}},
    }));
    let mut asked = Value::Null;
    loop {
        let message = server.next_message();
        if message["method"] == "elicitation/create" {
            asked = message["params"].clone();
            server.send(&json!({
                "jsonrpc": "2.0", "id": message["id"], "result": {"action": action},
            }));
        } else if message["id"] == json!(id) {
            return (asked, message);
        }
    }
}

/// The 2026-07-28 `_meta` of a client that can elicit.
fn meta_eliciting() -> Value {
    let mut meta = meta_2026();
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({"elicitation": {}});
    meta
}

/// A 2026-07-28 `tools/call` of `hostile.wipe`, with a retry's fields.
fn call_2026(server: &mut Server, retry: Option<(&str, &str)>) -> Value {
    let mut params = json!({"_meta": meta_eliciting(), "name": "hostile.wipe", "arguments": {}});
    if let Some((state, action)) = retry {
        params["requestState"] = json!(state);
        params["inputResponses"] = json!({"approval": {"action": action}});
    }
    server.request("tools/call", params)
}

fn audit(setup: &Setup) -> String {
    std::fs::read_to_string(setup.audit()).expect("audit log")
}

fn error_text(response: &Value) -> String {
    let result = &response["result"];
    assert_eq!(result["isError"], true, "{response}");
    result["content"][0]["text"]
        .as_str()
        .expect("text")
        .to_string()
}

#[test]
fn legacy_elicitation_shows_the_facts_and_an_accept_runs_the_call() {
    let setup = Setup::new();
    let mut server = setup.serve();
    initialize_with_elicitation(&mut server);
    let (asked, response) = call_answering(&mut server, "hostile.wipe", "accept");
    let message = asked["message"].as_str().expect("message");
    assert!(message.contains("tool: hostile.wipe"), "{message}");
    assert!(message.contains(&plugin_sha("hostile")), "{message}");
    assert!(message.contains("effect: destructive"), "{message}");
    assert!(message.contains("arguments (sha256 "), "{message}");
    assert_eq!(asked["requestedSchema"]["type"], "object", "{asked}");
    assert_ne!(response["result"]["isError"], true, "{response}");
    assert_eq!(response["result"]["structuredContent"], Value::Null);
    server.finish();
    let log = audit(&setup);
    assert!(log.contains("\"approved\":true"), "{log}");
    assert!(
        log.contains("a person through MCP elicitation (elicitation/create, client pipe-test/1.0)"),
        "{log}"
    );
}

#[test]
fn legacy_elicitation_declined_is_an_error_result_audited_as_declined() {
    let setup = Setup::new();
    let mut server = setup.serve();
    initialize_with_elicitation(&mut server);
    let (_, response) = call_answering(&mut server, "hostile.wipe", "decline");
    let text = error_text(&response);
    assert!(text.contains("declined by a person"), "{text}");
    // The person was asked: no hint to pre-approve instead.
    assert!(!text.contains("pre-approve"), "{text}");
    let (_, cancelled) = call_answering(&mut server, "hostile.wipe", "cancel");
    assert!(error_text(&cancelled).contains("cancelled by a person"));
    server.finish();
    let log = audit(&setup);
    assert!(log.contains("\"approved\":false"), "{log}");
    assert!(
        log.contains("declined by a person through MCP elicitation"),
        "{log}"
    );
    assert!(!log.contains("\"approved\":true"), "{log}");
}

/// The first round: `input_required` with the elicitation and the state.
fn first_round(server: &mut Server) -> String {
    let first = call_2026(server, None);
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let ask = &result["inputRequests"]["approval"];
    assert_eq!(ask["method"], "elicitation/create", "{first}");
    let message = ask["params"]["message"].as_str().expect("message");
    assert!(message.contains(&plugin_sha("hostile")), "{message}");
    assert!(message.contains("tool: hostile.wipe"), "{message}");
    result["requestState"]
        .as_str()
        .expect("requestState")
        .to_string()
}

#[test]
fn a_2026_approval_is_input_required_then_the_accepting_retry_runs() {
    let setup = Setup::new();
    let mut server = setup.serve();
    let state = first_round(&mut server);
    let retry = call_2026(&mut server, Some((&state, "accept")));
    assert_eq!(retry["result"]["resultType"], "complete", "{retry}");
    assert_ne!(retry["result"]["isError"], true, "{retry}");
    assert_eq!(retry["result"]["structuredContent"], "wiped", "{retry}");
    server.finish();
    let log = audit(&setup);
    assert!(
        log.contains("a person through MCP elicitation (input_required, client pipe-test/1.0)"),
        "{log}"
    );
}

#[test]
fn a_2026_declined_retry_is_refused_and_audited_as_declined() {
    let setup = Setup::new();
    let mut server = setup.serve();
    let state = first_round(&mut server);
    let retry = call_2026(&mut server, Some((&state, "decline")));
    assert!(
        error_text(&retry).contains("declined by a person"),
        "{retry}"
    );
    server.finish();
    let log = audit(&setup);
    assert!(
        log.contains("declined by a person through MCP elicitation"),
        "{log}"
    );
    assert!(!log.contains("\"approved\":true"), "{log}");
}

#[test]
fn a_replayed_request_state_is_refused() {
    let setup = Setup::new();
    let mut server = setup.serve();
    let state = first_round(&mut server);
    let retry = call_2026(&mut server, Some((&state, "accept")));
    assert_ne!(retry["result"]["isError"], true, "{retry}");
    let replay = call_2026(&mut server, Some((&state, "accept")));
    let text = error_text(&replay);
    assert!(text.contains("already used"), "{text}");
    server.finish();
    assert_eq!(audit(&setup).matches("\"approved\":true").count(), 1);
}

#[test]
fn an_altered_request_state_is_refused() {
    let setup = Setup::new();
    let mut server = setup.serve();
    let state = first_round(&mut server);
    // One character of the sealed payload changed (still valid hex).
    let mut altered = state.clone().into_bytes();
    altered[12] = if altered[12] == b'0' { b'1' } else { b'0' };
    let altered = String::from_utf8(altered).expect("ascii");
    let retry = call_2026(&mut server, Some((&altered, "accept")));
    assert!(error_text(&retry).contains("altered"), "{retry}");
    // A state made up by the client is refused the same way.
    let forged = call_2026(&mut server, Some(("ps1.7b7d.00", "accept")));
    assert!(error_text(&forged).contains("altered"), "{forged}");
    server.finish();
    assert!(!audit(&setup).contains("\"approved\":true"));
}

#[test]
fn a_2026_client_without_elicitation_gets_how_to_pre_approve() {
    let setup = Setup::new();
    let mut server = setup.serve();
    let call = server.request(
        "tools/call",
        json!({"_meta": meta_2026(), "name": "hostile.wipe", "arguments": {}}),
    );
    let text = error_text(&call);
    assert!(text.contains("pre-approve"), "{text}");
    server.finish();
}

/// Records what it was asked and answers with `answer`.
struct PerCall {
    seen: Mutex<Vec<ApprovalRequest>>,
    answer: fn(&ApprovalRequest, &[ApprovalRequest]) -> Decision,
}

impl Approver for PerCall {
    fn decide(&self, request: &ApprovalRequest) -> Decision {
        let mut seen = self.seen.lock().expect("lock");
        let decision = (self.answer)(request, &seen);
        seen.push(request.clone());
        decision
    }
}

async fn hostile_host() -> Host {
    Host::builder()
        .plugin(PluginConfig::new("hostile", plugin_path("hostile")).sha256(plugin_sha("hostile")))
        .build()
        .await
        .expect("loads")
}

#[tokio::test]
async fn a_per_call_approver_decides_instead_of_the_hosts() {
    let host = hostile_host().await;
    // The host's own approver denies everything.
    let denied = host
        .call("hostile.wipe", "{}", &CallContext::new())
        .await
        .expect_err("denied by default");
    assert!(matches!(denied, Error::ApprovalDenied { .. }), "{denied:?}");
    let approver = Arc::new(PerCall {
        seen: Mutex::default(),
        answer: |request, _| request.approve_by("per-call"),
    });
    let out = host
        .call(
            "hostile.wipe",
            "{}",
            &CallContext::new().approver(approver.clone()),
        )
        .await
        .expect("approved by the per-call approver");
    assert_eq!(out.value, json!("wiped"));
    let seen = approver.seen.lock().expect("lock");
    assert_eq!(seen[0].tool, "hostile.wipe");
    assert_eq!(seen[0].plugin_sha256, plugin_sha("hostile"));
}

#[tokio::test]
async fn a_per_call_approver_cannot_replay_an_earlier_approval() {
    let host = hostile_host().await;
    // Approves each request with the approval of the first one it saw.
    let approver = Arc::new(PerCall {
        seen: Mutex::default(),
        answer: |request, seen| seen.first().unwrap_or(request).approve(),
    });
    let ctx = CallContext::new().approver(approver);
    host.call("hostile.wipe", "{}", &ctx)
        .await
        .expect("the first approval is good");
    let replayed = host
        .call("hostile.wipe", "{}", &ctx)
        .await
        .expect_err("a replay is refused");
    match replayed {
        Error::ApprovalDenied { reason, .. } => {
            assert!(reason.contains("approvals are used once"), "{reason}");
        }
        other => panic!("expected a refused replay, got {other:?}"),
    }
}

#[tokio::test]
async fn the_approval_record_says_whether_the_client_or_the_operator_approved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    // The operator's approver approves without asking (`call --approve`).
    let host = Host::builder()
        .plugin(PluginConfig::new("hostile", plugin_path("hostile")).sha256(plugin_sha("hostile")))
        .approver(PerCall {
            seen: Mutex::default(),
            answer: |request, _| request.approve_by("--approve"),
        })
        .audit(portcullis::FileSink::open(&log).expect("audit"))
        .build()
        .await
        .expect("loads");
    host.call("hostile.wipe", "{}", &CallContext::new())
        .await
        .expect("pre-approved by the operator");
    let person = Arc::new(PerCall {
        seen: Mutex::default(),
        answer: |request, _| request.approve_by("a person through MCP elicitation"),
    });
    host.call("hostile.wipe", "{}", &CallContext::new().approver(person))
        .await
        .expect("approved by the client's user");
    drop(host);
    let decided: Vec<Value> = super::mcp::records(&log)
        .into_iter()
        .filter(|r| r["event"] == "approval_decided")
        .collect();
    assert_eq!(decided.len(), 2, "{decided:?}");
    assert_eq!(decided[0]["approver"], "operator", "{decided:?}");
    assert_eq!(decided[0]["by"], "--approve", "{decided:?}");
    assert_eq!(decided[1]["approver"], "client", "{decided:?}");
}
