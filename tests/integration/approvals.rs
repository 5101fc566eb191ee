//! Irreversible actions wait for an approval bound to the plugin's hash,
//! the tool and the exact arguments, used once; the plugin has no
//! interface to it.

use portcullis::{
    Approval, ApprovalRequest, ApprovalSetting, Approver, CallContext, Decision, DirMode, Effect,
    Error, FileSink, Host, PluginConfig,
};
use portcullis_tests::{
    ApproveAll, Fixture, audit_records, events, plugin_path, plugin_sha, refunds,
};
use std::sync::{Arc, Mutex};

/// Approves the first request, then keeps returning that same approval:
/// an approver (or anyone who got hold of one approval) trying a replay.
#[derive(Default, Clone)]
struct Replayer {
    kept: Arc<Mutex<Option<Approval>>>,
    seen: Arc<Mutex<Vec<ApprovalRequest>>>,
}

impl Approver for Replayer {
    fn decide(&self, request: &ApprovalRequest) -> Decision {
        self.seen.lock().expect("lock").push(request.clone());
        let mut kept = self.kept.lock().expect("lock");
        if let Some(approval) = kept.as_ref() {
            return Decision::Approve(approval.clone());
        }
        let decision = request.approve_by("replayer");
        if let Decision::Approve(approval) = &decision {
            *kept = Some(approval.clone());
        }
        decision
    }
}

fn refund(amount: u32) -> String {
    format!(r#"{{"order_id": "A-1", "amount": {amount}}}"#)
}

async fn call(host: &Host, tool: &str, args: &str) -> Result<serde_json::Value, Error> {
    host.call(tool, args, &CallContext::new())
        .await
        .map(|o| o.value)
}

fn denied_because(result: Result<serde_json::Value, Error>, because: &str) {
    match result {
        Err(Error::ApprovalDenied { reason, .. }) => {
            assert!(reason.contains(because), "{reason}");
        }
        other => panic!("expected a denied approval ({because}), got {other:?}"),
    }
}

#[tokio::test]
async fn refunds_up_to_the_cap_run_and_above_it_need_approval() {
    let host = Host::builder()
        .plugin(refunds())
        .build()
        .await
        .expect("loads");
    let tool = &host.tools()[0];
    assert_eq!(tool.effect, Effect::Write);
    assert!(matches!(tool.approval, ApprovalSetting::Rules(_)));
    let out = call(&host, "refunds.refund", &refund(100))
        .await
        .expect("under the cap");
    assert_eq!(out["status"], "refunded");
    // The default approver denies.
    denied_because(
        call(&host, "refunds.refund", &refund(101)).await,
        "no approver",
    );
    denied_because(
        call(
            &host,
            "refunds.refund",
            r#"{"order_id": "A-1", "amount": 1e3}"#,
        )
        .await,
        "no approver",
    );
}

#[tokio::test]
async fn a_rule_on_a_missing_or_mistyped_field_asks() {
    // A rule that cannot be evaluated asks rather than lets the call
    // through: `/order_id` is a string (mistyped for `>`)...
    let seen = Replayer::default();
    let host = Host::builder()
        .plugin(refunds().approval(
            "refund",
            portcullis::manifest::ApprovalEntry::rules(["/order_id > 5"]),
        ))
        .approver(seen.clone())
        .build()
        .await
        .expect("loads");
    call(&host, "refunds.refund", &refund(1))
        .await
        .expect("approved");
    let reason = seen.seen.lock().expect("lock")[0].reason.clone();
    assert!(reason.contains("/order_id > 5"), "{reason}");
    // ...and `/note` is absent.
    let host = Host::builder()
        .plugin(refunds().approval(
            "refund",
            portcullis::manifest::ApprovalEntry::rules(["/note == \"vip\""]),
        ))
        .build()
        .await
        .expect("loads");
    denied_because(
        call(&host, "refunds.refund", &refund(1)).await,
        "no approver",
    );
}

#[tokio::test]
async fn approver_sees_plugin_tool_exact_arguments_effect_and_grants() {
    let replayer = Replayer::default();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("api.secret"), "an-api-token-value").expect("write");
    // The orders folder beside the secret, never around it.
    std::fs::create_dir(dir.path().join("orders")).expect("mkdir");
    let host = Host::builder()
        .secret(
            portcullis::SecretConfig::file("api", dir.path().join("api.secret"))
                .destination(portcullis::manifest::DestinationEntry::url(
                    "https://payments.example.com",
                ))
                .inject(portcullis::manifest::InjectEntry::header(
                    "Authorization",
                    "Bearer {}",
                )),
        )
        .plugin(
            refunds()
                .dir(
                    dir.path().join("orders"),
                    "/orders",
                    portcullis::DirMode::ReadOnly,
                )
                .env("REGION", "eu")
                .http("https://payments.example.com/v1/")
                .secret("api"),
        )
        .approver(replayer.clone())
        .build()
        .await
        .expect("loads");
    let args = "{ \"amount\" : 250, \"order_id\": \"A-9\" }";
    host.call(
        "refunds.refund",
        args,
        &CallContext::new().caller("agent-1"),
    )
    .await
    .expect("approved");
    let request = replayer.seen.lock().expect("lock")[0].clone();
    assert_eq!(request.tool, "refunds.refund");
    assert_eq!(request.plugin_sha256, plugin_sha("refunds"));
    assert_eq!(request.arguments, args);
    assert_eq!(request.effect, Effect::Write);
    assert_eq!(request.caller.as_deref(), Some("agent-1"));
    assert!(
        request.reason.contains("/amount > 100"),
        "{}",
        request.reason
    );
    // Every grant the call runs with.
    assert_eq!(request.dirs.len(), 1);
    assert_eq!(request.dirs[0].guest, "/orders");
    assert_eq!(request.dirs[0].mode, portcullis::DirMode::ReadOnly);
    assert_eq!(request.env, ["REGION"]);
    assert_eq!(request.http, ["https://payments.example.com:443/v1/"]);
    assert_eq!(request.secrets, ["api"]);

    // A secret value pasted into the arguments never reaches the approver:
    // the call is refused before it is asked.
    let err = host
        .call(
            "refunds.refund",
            r#"{"amount": 250, "order_id": "an-api-token-value"}"#,
            &CallContext::new(),
        )
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, portcullis::Error::InvalidArguments { .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("an-api-token-value"), "{err}");
    assert_eq!(replayer.seen.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn approval_replayed_with_changed_arguments_is_refused() {
    let replayer = Replayer::default();
    let host = Host::builder()
        .plugin(refunds())
        .approver(replayer)
        .build()
        .await
        .expect("loads");
    call(&host, "refunds.refund", &refund(150))
        .await
        .expect("first call approved");
    denied_because(
        call(&host, "refunds.refund", &refund(5000)).await,
        "other arguments",
    );
    // Even for the same arguments, an approval is used once.
    denied_because(
        call(&host, "refunds.refund", &refund(150)).await,
        "used once",
    );
}

#[tokio::test]
async fn approval_for_another_plugin_hash_is_refused() {
    let fixture = Fixture::new();
    let replayer = Replayer::default();
    let host = Host::builder()
        .plugin(refunds())
        .plugin(
            PluginConfig::new("hostile", plugin_path("hostile"))
                .sha256(plugin_sha("hostile"))
                .dir(fixture.path("rw"), "/rw", DirMode::ReadWrite),
        )
        .approver(replayer)
        .build()
        .await
        .expect("loads");
    call(&host, "refunds.refund", &refund(150))
        .await
        .expect("approved");
    denied_because(call(&host, "hostile.echo", "{}").await, "another plugin");
}

#[tokio::test]
async fn plugin_declaring_read_with_a_read_write_grant_needs_write_level_approval() {
    let fixture = Fixture::new();
    let config = |mode| {
        PluginConfig::new("hostile", plugin_path("hostile"))
            .sha256(plugin_sha("hostile"))
            .dir(fixture.path("rw"), "/rw", mode)
    };
    // The plugin declares every tool `read`.
    let read_only = Host::builder()
        .plugin(config(DirMode::ReadOnly))
        .build()
        .await
        .expect("loads");
    let echo = read_only
        .tools()
        .into_iter()
        .find(|t| t.name == "hostile.echo");
    assert_eq!(echo.expect("echo").approval, ApprovalSetting::Never);
    call(&read_only, "hostile.echo", "{}")
        .await
        .expect("read tools do not ask");

    let writable = Host::builder()
        .plugin(config(DirMode::ReadWrite))
        .build()
        .await
        .expect("loads");
    let echo = writable
        .tools()
        .into_iter()
        .find(|t| t.name == "hostile.echo");
    let echo = echo.expect("echo");
    assert_eq!(
        (echo.effect, echo.approval),
        (Effect::Write, ApprovalSetting::Always)
    );
    denied_because(call(&writable, "hostile.echo", "{}").await, "no approver");
}

#[tokio::test]
async fn every_decision_is_audited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let host = Host::builder()
        .plugin(refunds())
        .approver(ApproveAll)
        .audit(FileSink::open(&log).expect("open"))
        .build()
        .await
        .expect("loads");
    call(&host, "refunds.refund", &refund(500))
        .await
        .expect("approved");
    let denying = Host::builder()
        .plugin(refunds())
        .audit(FileSink::open(&log).expect("open"))
        .build()
        .await
        .expect("loads");
    assert!(
        call(&denying, "refunds.refund", &refund(500))
            .await
            .is_err()
    );
    let records = audit_records(&log);
    assert_eq!(
        events(&records),
        [
            "plugin_loaded",
            "call_started",
            "approval_requested",
            "approval_decided",
            "call_ended",
            "plugin_loaded",
            "call_started",
            "approval_requested",
            "approval_decided",
            "denied",
            "call_ended",
        ]
    );
    assert_eq!(records[3]["approved"], true);
    assert_eq!(records[3]["by"], "test");
    assert_eq!(records[8]["approved"], false);
    assert_eq!(records[9]["kind"], "approval");
    assert_eq!(records[10]["outcome"], "approval_denied");
    portcullis::verify_log(&std::fs::read(&log).expect("read"), &[]).expect("two intact chains");
}

#[tokio::test]
async fn denials_past_the_maximum_stop_the_call_as_suspicious() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let host = Host::builder()
        .plugin(refunds())
        .max_denials(0)
        .audit(FileSink::open(&log).expect("open"))
        .build()
        .await
        .expect("loads");
    match call(&host, "refunds.refund", &refund(500)).await {
        Err(Error::Suspicious { denials, .. }) => assert_eq!(denials, 1),
        other => panic!("expected a suspicious call, got {other:?}"),
    }
    let records = audit_records(&log);
    assert!(events(&records).contains(&"suspicious".to_string()));
    assert_eq!(records.last().expect("records")["outcome"], "suspicious");
}

#[tokio::test]
async fn approval_settings_for_unknown_tools_are_refused_at_load() {
    let result = Host::builder()
        .plugin(refunds().approval("refudn", portcullis::manifest::ApprovalEntry::Never))
        .build()
        .await;
    match result {
        Err(e @ Error::Manifest { .. }) => assert!(e.to_string().contains("tools.refudn"), "{e}"),
        other => panic!("expected a manifest error, got {other:?}"),
    }
}

/// `hostile` with nothing granted and no approver.
fn bare_hostile() -> PluginConfig {
    PluginConfig::new("hostile", plugin_path("hostile")).sha256(plugin_sha("hostile"))
}

#[tokio::test]
async fn destructive_tool_always_asks() {
    let host = Host::builder()
        .plugin(bare_hostile())
        .build()
        .await
        .expect("loads");
    let wipe = host
        .tools()
        .into_iter()
        .find(|t| t.name == "hostile.wipe")
        .expect("wipe");
    assert_eq!(wipe.effect, Effect::Destructive);
    assert_eq!(wipe.approval, ApprovalSetting::Always);
    denied_because(call(&host, "hostile.wipe", "{}").await, "no approver");
    // A read tool of the same plugin runs without asking.
    assert_eq!(
        call(&host, "hostile.counter", "{}")
            .await
            .expect("read tool"),
        serde_json::json!(1)
    );
}

#[tokio::test]
async fn destructive_tool_cannot_be_configured_to_never_ask() {
    let result = Host::builder()
        .plugin(bare_hostile().approval("wipe", portcullis::manifest::ApprovalEntry::Never))
        .build()
        .await;
    match result {
        Err(e @ Error::Manifest { .. }) => assert!(e.to_string().contains("wipe"), "{e}"),
        other => panic!("expected a manifest error, got {other:?}"),
    }
}
