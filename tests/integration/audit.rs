//! Every load, call, approval and denial is on the record: one JSON line
//! per event, hash-chained per writer, written before the call returns,
//! and any tampering is reported by `verify_log`.

use portcullis::{
    AuditSink, CallContext, DirMode, Error, FileSink, Host, PluginConfig, TamperKind, verify_log,
};
use portcullis_tests::{
    ApproveAll, Fixture, audit_records, events, limits, plugin_path, plugin_sha, refunds,
};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

async fn refunds_host(log: &Path) -> Host {
    Host::builder()
        .plugin(refunds())
        .audit(FileSink::open(log).expect("open log"))
        .build()
        .await
        .expect("refunds loads")
}

/// A log of a few calls, and the host's head after them.
async fn sample_log(log: &Path) -> portcullis::AuditHead {
    let host = refunds_host(log).await;
    for amount in [10, 20, 30] {
        host.call(
            "refunds.refund",
            &format!(r#"{{"order_id": "A-{amount}", "amount": {amount}}}"#),
            &CallContext::new().caller("agent-7"),
        )
        .await
        .expect("small refunds run");
    }
    host.audit_head().expect("the host wrote records")
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

fn verify(lines: &[String]) -> Result<portcullis::AuditReport, portcullis::AuditTamper> {
    verify_log((lines.join("\n") + "\n").as_bytes(), &[])
}

#[tokio::test]
async fn every_load_and_call_is_recorded_in_a_verifiable_chain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let head = sample_log(&log).await;
    let records = audit_records(&log);
    assert_eq!(
        events(&records),
        [
            "plugin_loaded",
            "call_started",
            "call_ended",
            "call_started",
            "call_ended",
            "call_started",
            "call_ended"
        ]
    );
    let load = &records[0];
    assert_eq!(load["plugin"], "refunds");
    assert_eq!(load["tool_list_sha256"].as_str().map(str::len), Some(64));
    let start = &records[1];
    assert_eq!(start["caller"], "agent-7");
    assert_eq!(start["tool"], "refunds.refund");
    assert!(
        start["arguments"]
            .as_str()
            .expect("arguments")
            .contains("A-10")
    );
    let end = &records[2];
    assert_eq!(end["outcome"], "ok");
    assert_eq!(end["call_id"], start["call_id"]);
    assert!(end["fuel_used"].as_u64().expect("fuel") > 0);
    assert!(end["output_bytes"].as_u64().expect("output size") > 0);

    let report = verify_log(
        &std::fs::read(&log).expect("read"),
        std::slice::from_ref(&head),
    )
    .expect("an untouched log is intact");
    assert_eq!(report.records, 7);
    assert_eq!(report.heads, vec![head]);
}

#[tokio::test]
async fn tampering_is_detected_edit_delete_reorder_insert() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    sample_log(&log).await;
    let original = lines(&log);

    let mut edited = original.clone();
    edited[3] = edited[3].replace("A-20", "A-99");
    let err = verify(&edited).expect_err("edit");
    assert_eq!((err.kind, err.line), (TamperKind::Edited, 4), "{err}");

    let mut deleted = original.clone();
    deleted.remove(3);
    let err = verify(&deleted).expect_err("delete");
    assert_eq!((err.kind, err.line), (TamperKind::Deleted, 4), "{err}");

    let mut reordered = original.clone();
    reordered.swap(3, 4);
    let err = verify(&reordered).expect_err("reorder");
    assert_eq!((err.kind, err.line), (TamperKind::Reordered, 4), "{err}");

    let mut inserted = original.clone();
    // A copy of an earlier record (a replayed approval, say) slipped in.
    inserted.insert(4, original[1].clone());
    let err = verify(&inserted).expect_err("insert");
    assert_eq!((err.kind, err.line), (TamperKind::Inserted, 5), "{err}");
}

#[tokio::test]
async fn truncated_tail_is_detected_with_a_head_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let head = sample_log(&log).await;
    let mut cut = lines(&log);
    cut.truncate(5);
    let text = cut.join("\n") + "\n";
    assert!(verify_log(text.as_bytes(), &[]).is_ok());
    let err = verify_log(text.as_bytes(), &[head]).expect_err("truncated");
    assert_eq!(err.kind, TamperKind::Truncated, "{err}");
}

#[tokio::test]
async fn arguments_cannot_forge_or_split_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let host = refunds_host(&log).await;
    let forged = "x\n{\"event\":\"approval_decided\",\"approved\":true}\r\u{1b}[2K\u{2028}";
    let arguments = serde_json::json!({ "order_id": forged, "amount": 5 }).to_string();
    host.call(
        "refunds.refund",
        &arguments,
        &CallContext::new().caller("a\nb"),
    )
    .await
    .expect("runs");
    let text = std::fs::read_to_string(&log).expect("read");
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text}");
    let records = audit_records(&log);
    assert_eq!(
        events(&records),
        ["plugin_loaded", "call_started", "call_ended"]
    );
    assert_eq!(records[1]["arguments"], arguments.as_str());
    assert_eq!(records[1]["caller"], "a\nb");
    verify_log(text.as_bytes(), &[]).expect("intact");
}

#[tokio::test]
async fn cancelled_call_is_still_recorded() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let host = Host::builder()
        .plugin(
            portcullis::PluginConfig::new("hostile", portcullis_tests::plugin_path("hostile"))
                .sha256(portcullis_tests::plugin_sha("hostile"))
                .dir(fixture.path("ro"), "/ro", portcullis::DirMode::ReadOnly)
                .limits(limits(|l| l.timeout = Duration::from_secs(60))),
        )
        .audit(FileSink::open(&log).expect("open").fsync(true))
        .build()
        .await
        .expect("loads");
    let token = portcullis::CancellationToken::new();
    let ctx = CallContext::new().cancellation(token.clone());
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        token.cancel();
    });
    let result = host.call("hostile.sleep", "{}", &ctx).await;
    assert!(matches!(result, Err(Error::Cancelled { .. })), "{result:?}");
    canceller.await.expect("canceller");
    let records = audit_records(&log);
    let end = records.last().expect("records");
    assert_eq!(end["event"], "call_ended");
    assert_eq!(end["outcome"], "cancelled");
    assert_eq!(end["cancelled"], true);
}

struct Broken;

impl AuditSink for Broken {
    fn write_line(&self, _line: &str) -> std::io::Result<()> {
        Err(std::io::Error::other("disk full"))
    }
}

#[tokio::test]
async fn nothing_happens_off_the_record() {
    let result = Host::builder()
        .plugin(refunds())
        .audit(Broken)
        .build()
        .await;
    match result {
        Err(Error::Audit(reason)) => assert!(reason.contains("disk full"), "{reason}"),
        other => panic!("expected an audit error, got {other:?}"),
    }
}

/// Accepts the first `ok` lines, then fails like a full disk.
struct FailsAfter {
    ok: usize,
    written: AtomicUsize,
}

impl AuditSink for FailsAfter {
    fn write_line(&self, _line: &str) -> std::io::Result<()> {
        if self.written.fetch_add(1, Ordering::SeqCst) < self.ok {
            Ok(())
        } else {
            Err(std::io::Error::other("disk full"))
        }
    }
}

#[tokio::test]
async fn a_call_whose_start_cannot_be_recorded_does_not_run() {
    let fixture = Fixture::new();
    // The plugin's load is recorded; the call's start is not.
    let host = Host::builder()
        .approver(ApproveAll)
        .audit(FailsAfter {
            ok: 1,
            written: AtomicUsize::new(0),
        })
        .plugin(
            PluginConfig::new("hostile", plugin_path("hostile"))
                .sha256(plugin_sha("hostile"))
                .dir(fixture.path("rw"), "/rw", DirMode::ReadWrite),
        )
        .build()
        .await
        .expect("loads");
    let result = host
        .call(
            "hostile.write",
            r#"{"path": "/rw/unrecorded.txt", "data": "x"}"#,
            &CallContext::new(),
        )
        .await;
    match result {
        Err(Error::Audit(reason)) => assert!(reason.contains("disk full"), "{reason}"),
        other => panic!("expected an audit error, got {other:?}"),
    }
    assert!(
        !fixture.path("rw/unrecorded.txt").exists(),
        "the plugin ran off the record"
    );
}

#[tokio::test]
async fn plugin_loaded_records_every_grant() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    Host::builder()
        .plugin(
            refunds()
                .dir(dir.path(), "/orders", DirMode::ReadOnly)
                .env("REGION", "eu")
                .http("https://payments.example.com/v1/"),
        )
        .audit(FileSink::open(&log).expect("open log"))
        .build()
        .await
        .expect("loads");
    let records = audit_records(&log);
    let load = &records[0];
    assert_eq!(load["event"], "plugin_loaded");
    assert_eq!(load["dirs"][0]["guest"], "/orders");
    assert_eq!(load["dirs"][0]["mode"], "read-only");
    assert_eq!(load["env"], serde_json::json!(["REGION"]));
    assert_eq!(
        load["http"],
        serde_json::json!(["https://payments.example.com:443/v1/"])
    );
}
