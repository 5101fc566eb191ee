//! The audit trail holds when calls do not end normally and when several
//! hosts share one file: egress recorded before it leaves, abandoned calls
//! recorded as such, one chain per file, records acknowledged before a
//! call returns, approvals with a deadline, refused loads on the record,
//! and an audit path that cannot be redirected through a symlink.

use portcullis::manifest::HttpTable;
use portcullis::{
    ApprovalFuture, ApprovalRequest, Approver, AuditSink, CallContext, DirMode, Error, FileSink,
    Host, PluginConfig, TamperKind, verify_log,
};
use portcullis_tests::net::Canary;
use portcullis_tests::{ApproveAll, audit_records, events, plugin_path, plugin_sha, refunds};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A loopback upstream that reports each request's path as it arrives:
/// `/answer` gets a 200, `/hang` never gets an answer.
async fn upstream() -> (u16, mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (seen, arrivals) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let path = text.split(' ').nth(1).unwrap_or_default().to_string();
                let _ = seen.send(path.clone());
                if path.starts_with("/answer") {
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                } else {
                    // Hold the connection until the test ends.
                    std::future::pending::<()>().await;
                }
            });
        }
    });
    (port, arrivals)
}

async fn egress_host(log: &Path, port: u16) -> Host {
    Host::builder()
        .plugin(
            PluginConfig::new("egress", plugin_path("egress"))
                .sha256(plugin_sha("egress"))
                .http(
                    HttpTable::new(format!("http://127.0.0.1:{port}"))
                        .allow_private(true)
                        .methods(["GET", "POST"]),
                ),
        )
        .approver(ApproveAll)
        .audit(FileSink::open(log).expect("open log"))
        .build()
        .await
        .expect("egress loads")
}

/// Runs `egress.send` with `requests` until the upstream has seen a request
/// to `/hang`, then drops the call's future.
async fn abandon_at_hang(
    host: &Host,
    requests: Value,
    arrivals: &mut mpsc::UnboundedReceiver<String>,
) {
    let arguments = json!({ "requests": requests }).to_string();
    let ctx = CallContext::new();
    let call = host.call("egress.send", &arguments, &ctx);
    tokio::pin!(call);
    loop {
        tokio::select! {
            result = &mut call => panic!("the call ended: {result:?}"),
            path = arrivals.recv() => {
                if path.expect("upstream").starts_with("/hang") {
                    break;
                }
            }
        }
    }
    // `call` is dropped here, mid-request.
}

fn intact(log: &Path) -> Vec<Value> {
    let bytes = std::fs::read(log).expect("read log");
    verify_log(&bytes, &[]).expect("the log verifies");
    audit_records(log)
}

/// Writes every record but `egress_sent`, which fails like a disk that
/// fills just then.
struct RefusesEgressSent;

impl AuditSink for RefusesEgressSent {
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        if line.contains("\"event\":\"egress_sent\"") {
            Err(std::io::Error::other("disk full"))
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_request_whose_sending_cannot_be_recorded_is_not_sent() {
    let canary = Canary::start().await;
    let base = format!("http://{}", canary.addr);
    let host = Host::builder()
        .plugin(
            PluginConfig::new("egress", plugin_path("egress"))
                .sha256(plugin_sha("egress"))
                .http(HttpTable::new(base.clone()).allow_private(true)),
        )
        .approver(ApproveAll)
        .audit(RefusesEgressSent)
        .build()
        .await
        .expect("egress loads");
    let arguments = json!({ "requests": [{ "url": format!("{base}/x") }] }).to_string();
    let result = host
        .call("egress.send", &arguments, &CallContext::new())
        .await;
    match result {
        Err(Error::Audit(reason)) => assert!(reason.contains("disk full"), "{reason}"),
        other => panic!("expected an audit error, got {other:?}"),
    }
    canary.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_the_call_is_dropped_is_on_the_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let (port, mut arrivals) = upstream().await;
    let host = egress_host(&log, port).await;
    let hang = format!("http://127.0.0.1:{port}/hang?token=q");
    abandon_at_hang(
        &host,
        json!([{ "method": "POST", "url": hang, "body": "exfiltrated" }]),
        &mut arrivals,
    )
    .await;
    drop(host); // the writer finishes what was queued
    let records = intact(&log);
    assert_eq!(
        events(&records),
        [
            "plugin_loaded",
            "call_started",
            "approval_requested",
            "approval_decided",
            "egress_sent",
            "call_ended"
        ],
        "{records:?}"
    );
    let sent = &records[4];
    assert_eq!(sent["method"], "POST");
    assert_eq!(
        sent["destination"],
        format!("http://127.0.0.1:{port}/hang"),
        "no query in the record"
    );
    assert_eq!(sent["request"], 1);
    assert_eq!(records[5]["outcome"], "abandoned");
    assert_eq!(records[5]["call_id"], records[1]["call_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_completed_before_the_call_was_dropped_is_on_the_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let (port, mut arrivals) = upstream().await;
    let host = egress_host(&log, port).await;
    let answer = format!("http://127.0.0.1:{port}/answer");
    let hang = format!("http://127.0.0.1:{port}/hang");
    // The plugin sends `/hang` only after `/answer`'s response reached
    // it, which the host hands over only once its record is written.
    abandon_at_hang(
        &host,
        json!([
            { "method": "POST", "url": answer, "body": "exfiltrated" },
            { "url": hang },
        ]),
        &mut arrivals,
    )
    .await;
    drop(host);
    let records = intact(&log);
    assert_eq!(
        events(&records),
        [
            "plugin_loaded",
            "call_started",
            "approval_requested",
            "approval_decided",
            "egress_sent",
            "egress",
            "egress_sent",
            "call_ended"
        ],
        "{records:?}"
    );
    let done = &records[5];
    assert_eq!(done["request"], 1);
    assert_eq!(done["allowed"], true);
    assert_eq!(done["status"], 200);
    assert_eq!(done["destination"], answer);
    assert_eq!(records[6]["request"], 2);
    assert_eq!(records[7]["outcome"], "abandoned");
}

#[tokio::test]
async fn hosts_sharing_a_file_continue_one_chain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let small = r#"{"order_id": "A-1", "amount": 5}"#;
    // Two hosts, two open files: what two processes would have.
    let first = Host::builder()
        .plugin(refunds())
        .audit(FileSink::open(&log).expect("open"))
        .build()
        .await
        .expect("loads");
    let second = Host::builder()
        .plugin(refunds())
        .audit(FileSink::open(&log).expect("open"))
        .build()
        .await
        .expect("loads");
    for host in [&first, &second, &first] {
        host.call("refunds.refund", small, &CallContext::new())
            .await
            .expect("runs");
    }
    let head = second.audit_head().expect("head");
    let bytes = std::fs::read(&log).expect("read");
    let report = verify_log(&bytes, &[]).expect("intact");
    assert_eq!(report.heads.len(), 1, "one chain: {:?}", report.heads);
    assert_eq!(report.records, 8);
    assert_eq!(head.chain, report.heads[0].chain);
    let records = audit_records(&log);
    let writers: std::collections::HashSet<&str> = records
        .iter()
        .filter_map(|r| r["writer"].as_str())
        .collect();
    assert_eq!(writers.len(), 2, "each record still names its host");

    // Removing one host's records is a gap in the chain, not a clean log.
    let text = String::from_utf8(bytes).expect("utf-8");
    let second_writer = records[1]["writer"].as_str().expect("writer").to_string();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(&second_writer))
        .collect();
    assert!(kept.len() < records.len());
    let err = verify_log((kept.join("\n") + "\n").as_bytes(), &[]).expect_err("gap");
    assert_eq!(err.kind, TamperKind::Deleted, "{err}");

    // The whole file replaced by a fresh chain: the checkpoint sees it.
    let fresh = dir.path().join("fresh.jsonl");
    drop(
        Host::builder()
            .plugin(refunds())
            .audit(FileSink::open(&fresh).expect("open"))
            .build()
            .await
            .expect("loads"),
    );
    let err = verify_log(&std::fs::read(&fresh).expect("read"), &[head]).expect_err("removed");
    assert_eq!(err.kind, TamperKind::Truncated, "{err}");
}

/// Holds every batch that contains a `call_ended` record until released,
/// telling the test when it is holding one.
struct Gated {
    lines: Mutex<Vec<String>>,
    holding: mpsc::UnboundedSender<()>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

/// The sink the host owns; the test keeps the other handle.
struct GatedSink(Arc<Gated>);

impl AuditSink for GatedSink {
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        let gated = &self.0;
        if line.contains(r#""event":"call_ended""#) {
            let _ = gated.holding.send(());
            let release = gated.release.lock().expect("lock");
            release.recv().map_err(std::io::Error::other)?;
        }
        gated.lines.lock().expect("lock").push(line.to_string());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_returns_only_after_its_records_are_written() {
    let (holding, mut held) = mpsc::unbounded_channel();
    let (release, released) = std::sync::mpsc::channel();
    let sink = Arc::new(Gated {
        lines: Mutex::new(Vec::new()),
        holding,
        release: Mutex::new(released),
    });
    let host = Host::builder()
        .plugin(refunds())
        .audit(GatedSink(Arc::clone(&sink)))
        .build()
        .await
        .expect("loads");
    // Dropped before the host, so a failing test cannot leave the writer
    // waiting for a release while the host joins it.
    let release = release;
    let ctx = CallContext::new();
    let call = host.call(
        "refunds.refund",
        r#"{"order_id": "A-1", "amount": 5}"#,
        &ctx,
    );
    tokio::pin!(call);
    tokio::select! {
        result = &mut call => panic!("returned before its end was written: {result:?}"),
        _ = held.recv() => {}
    }
    // The writer holds the `call_ended` record: the call is still waiting.
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        call.as_mut().poll(&mut cx).is_pending(),
        "the call returned before its record was acknowledged"
    );
    release.send(()).expect("release");
    call.await.expect("the call runs");
    let lines = sink.lines.lock().expect("lock").clone();
    assert!(
        lines.last().is_some_and(|l| l.contains("call_ended")),
        "{lines:?}"
    );
}

/// Never answers.
struct Silent;

impl Approver for Silent {
    fn approve<'a>(&'a self, _request: &'a ApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn an_approval_nobody_gives_times_out_on_the_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let host = Host::builder()
        .plugin(refunds())
        .approver(Silent)
        .approval_timeout(Duration::from_millis(50))
        .audit(FileSink::open(&log).expect("open"))
        .build()
        .await
        .expect("loads");
    let result = host
        .call(
            "refunds.refund",
            r#"{"order_id": "A-1", "amount": 500}"#,
            &CallContext::new(),
        )
        .await;
    match &result {
        Err(e @ Error::ApprovalTimedOut { .. }) => {
            assert!(e.to_string().contains("approval timed out"), "{e}");
        }
        other => panic!("expected a timed-out approval, got {other:?}"),
    }
    let records = intact(&log);
    assert_eq!(
        events(&records),
        [
            "plugin_loaded",
            "call_started",
            "approval_requested",
            "approval_decided",
            "denied",
            "call_ended"
        ]
    );
    assert_eq!(records[3]["approved"], false);
    assert!(
        records[3]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("approval timed out")),
        "{}",
        records[3]
    );
    assert_eq!(records[5]["outcome"], "approval_timed_out");
    assert_eq!(records[5]["fuel_used"], 0, "the plugin did not run");
}

#[tokio::test]
async fn a_plugin_refused_at_load_is_on_the_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let result = Host::builder()
        .plugin(PluginConfig::new("refunds", plugin_path("refunds")).sha256("0".repeat(64)))
        .audit(FileSink::open(&log).expect("open"))
        .build()
        .await;
    assert!(
        matches!(result, Err(Error::PinMismatch { .. })),
        "{result:?}"
    );
    let records = intact(&log);
    assert_eq!(events(&records), ["plugin_refused"]);
    assert_eq!(records[0]["plugin"], "refunds");
    assert_eq!(records[0]["pinned_sha256"], "0".repeat(64));
    assert!(
        records[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("sha256")),
        "{}",
        records[0]
    );
}

#[tokio::test]
async fn a_plugin_refused_for_its_grants_is_on_the_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let result = Host::builder()
        .plugin(
            PluginConfig::new("refunds", plugin_path("refunds"))
                .sha256(plugin_sha("refunds"))
                .dir("/etc", "/etc", DirMode::ReadOnly),
        )
        .audit(FileSink::open(&log).expect("open"))
        .build()
        .await;
    assert!(matches!(result, Err(Error::Manifest { .. })), "{result:?}");
    let records = intact(&log);
    assert_eq!(events(&records), ["plugin_refused"]);
    assert_eq!(records[0]["plugin"], "refunds");
    assert!(
        records[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("/etc")),
        "{}",
        records[0]
    );
}

#[tokio::test]
async fn plugin_loaded_records_the_manifest_hash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("portcullis.toml");
    let text = format!(
        "[audit]\npath = \"audit.jsonl\"\n\n[plugins.refunds]\nsource = {:?}\nsha256 = \"{}\"\n",
        plugin_path("refunds").to_str().expect("utf-8"),
        plugin_sha("refunds")
    );
    std::fs::write(&manifest, &text).expect("write");
    drop(Host::from_manifest(&manifest).await.expect("loads"));
    let records = intact(&dir.path().join("audit.jsonl"));
    assert_eq!(records[0]["event"], "plugin_loaded");
    assert_eq!(
        records[0]["manifest_sha256"],
        portcullis::sha256_hex(text.as_bytes())
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlinked_audit_path_is_refused_and_the_log_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").expect("write");
    let link = dir.path().join("plink.jsonl");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    let err = FileSink::open(&link).expect_err("a symlink is refused");
    assert!(err.to_string().contains("symlink"), "{err}");
    // Through a manifest too: refused at load, the victim untouched.
    let manifest = dir.path().join("portcullis.toml");
    std::fs::write(
        &manifest,
        format!(
            "[audit]\npath = \"plink.jsonl\"\n\n[plugins.refunds]\nsource = {:?}\nsha256 = \"{}\"\n",
            plugin_path("refunds").to_str().expect("utf-8"),
            plugin_sha("refunds")
        ),
    )
    .expect("write");
    let result = Host::from_manifest(&manifest).await;
    assert!(matches!(result, Err(Error::Manifest { .. })), "{result:?}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        "precious\n"
    );

    let log = dir.path().join("audit.jsonl");
    drop(
        Host::builder()
            .plugin(refunds())
            .approver(ApproveAll)
            .audit(FileSink::open(&log).expect("open"))
            .build()
            .await
            .expect("loads"),
    );
    let mode = std::fs::metadata(&log).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}
