//! Unit tests of the audit log: chaining, ordering, scrubbing, group
//! commit and a file's chain past a torn line.
use super::*;
use crate::hash::sha256_hex;
use std::sync::Mutex;

/// Collects lines in memory.
#[derive(Default)]
pub(super) struct Memory(pub(super) Mutex<Vec<String>>);

impl AuditSink for Arc<Memory> {
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        self.0.lock().expect("lock").push(line.to_string());
        Ok(())
    }
}

fn event(tool: &str) -> AuditEvent {
    AuditEvent::Denied {
        call_id: 1,
        tool: tool.into(),
        kind: "approval",
        reason: "no".into(),
        denials: 1,
    }
}

fn log_to(memory: &Arc<Memory>) -> AuditLog {
    AuditLog::new(Some(Arc::new(Arc::clone(memory)))).expect("writer")
}

#[tokio::test]
async fn records_chain_by_the_hash_of_the_previous_line() {
    let memory = Arc::new(Memory::default());
    let log = log_to(&memory);
    log.record(event("a.b")).await.expect("write");
    log.record(event("a.c")).await.expect("write");
    let lines = memory.0.lock().expect("lock").clone();
    let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
    let second: serde_json::Value = serde_json::from_str(&lines[1]).expect("json");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev"], GENESIS);
    assert_eq!(first["event"], "denied");
    assert_eq!(second["seq"], 2);
    assert_eq!(second["chain"], first["chain"]);
    assert_eq!(second["prev"], sha256_hex(lines[0].as_bytes()));
    let head = log.head().expect("head");
    assert_eq!(head.seq, 2);
    assert_eq!(head.sha256, sha256_hex(lines[1].as_bytes()));
    let text = lines.join("\n") + "\n";
    let report = verify_log(text.as_bytes(), &[head]).expect("intact");
    assert_eq!(report.records, 2);
}

#[tokio::test]
async fn records_keep_the_order_they_were_queued_in() {
    let memory = Arc::new(Memory::default());
    let log = log_to(&memory);
    // Queued without waiting, then acknowledged in any order: the
    // chain follows the queue.
    let acks: Vec<Ack> = (0..50)
        .map(|i| log.send(event(&format!("t.{i}"))))
        .collect();
    for ack in acks.into_iter().rev() {
        ack.written().await.expect("written");
    }
    log.record_detached(event("t.last"));
    drop(log); // joins the writer: the detached record is written
    let lines = memory.0.lock().expect("lock").clone();
    let tools: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["tool"].to_string())
        .collect();
    let expected: Vec<String> = (0..50)
        .map(|i| format!("\"t.{i}\""))
        .chain(["\"t.last\"".to_string()])
        .collect();
    assert_eq!(tools, expected);
    verify_log((lines.join("\n") + "\n").as_bytes(), &[]).expect("intact");
}

#[tokio::test]
async fn control_characters_cannot_split_a_record() {
    let memory = Arc::new(Memory::default());
    let log = log_to(&memory);
    log.record(event("x\n{\"seq\":9}\r\u{1b}[2J\u{2028}"))
        .await
        .expect("write");
    let lines = memory.0.lock().expect("lock").clone();
    assert_eq!(lines.len(), 1);
    assert!(!lines[0].contains(['\n', '\r', '\u{1b}']), "{}", lines[0]);
}

#[tokio::test]
async fn every_string_of_a_record_is_scrubbed() {
    let memory = Arc::new(Memory::default());
    let scrubber = Arc::new(Scrubber::new([(
        "api",
        &crate::Secret::new("tok-0123456789"),
    )]));
    let log = log_to(&memory).scrubbing(scrubber);
    log.record(AuditEvent::Denied {
        call_id: 1,
        tool: "a.b".into(),
        kind: "approval",
        reason: "echoed tok-0123456789 and dG9rLTAxMjM0NTY3ODk=".into(),
        denials: 1,
    })
    .await
    .expect("write");
    let line = memory.0.lock().expect("lock")[0].clone();
    assert!(!line.contains("tok-0123456789"), "{line}");
    assert!(!line.contains("dG9rLTAxMjM0NTY3ODk"), "{line}");
    let record: serde_json::Value = serde_json::from_str(&line).expect("json");
    let reason = record["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("echoed [redacted:api] and [redacted:api]"),
        "{reason}"
    );
}

/// Counts batches; holds the first until released.
struct Held {
    batches: Mutex<Vec<usize>>,
    started: std::sync::mpsc::Sender<()>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

struct HeldSink(Arc<Held>);

impl AuditSink for HeldSink {
    fn write_line(&self, _line: &str) -> std::io::Result<()> {
        unreachable!("the writer writes batches")
    }

    fn write_batch(&self, lines: &[String]) -> std::io::Result<()> {
        let first = self.0.batches.lock().expect("lock").is_empty();
        if first {
            let _ = self.0.started.send(());
            let _ = self.0.release.lock().expect("lock").recv();
        }
        self.0.batches.lock().expect("lock").push(lines.len());
        Ok(())
    }
}

#[tokio::test]
async fn records_queued_while_the_sink_is_busy_are_written_as_one_batch() {
    let (started, busy) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel();
    let held = Arc::new(Held {
        batches: Mutex::new(Vec::new()),
        started,
        release: Mutex::new(released),
    });
    let log = AuditLog::new(Some(Arc::new(HeldSink(Arc::clone(&held))))).expect("writer");
    let first = log.send(event("a.first"));
    busy.recv().expect("the writer is writing the first batch");
    let rest: Vec<Ack> = (0..49).map(|_| log.send(event("a.more"))).collect();
    release.send(()).expect("release");
    first.written().await.expect("written");
    for ack in rest {
        ack.written().await.expect("written");
    }
    // Group commit: one write (and one fsync, for a file) for the 49.
    assert_eq!(*held.batches.lock().expect("lock"), [1, 49]);
}

#[tokio::test]
async fn a_file_continues_its_chain_past_a_torn_last_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::new(Some(Arc::new(FileSink::open(&path).expect("open")))).expect("writer");
    log.record(event("a.b")).await.expect("write");
    drop(log);
    // A crash in the middle of the next write.
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str(r#"{"chain":"c","seq":2,"pr"#);
    std::fs::write(&path, &text).expect("write");
    let log = AuditLog::new(Some(Arc::new(FileSink::open(&path).expect("open")))).expect("writer");
    log.record(event("a.c")).await.expect("write");
    drop(log);
    let bytes = std::fs::read(&path).expect("read");
    let report = verify_log(&bytes, &[]).expect("intact around the torn record");
    assert_eq!(report.records, 2);
    assert_eq!(report.heads.len(), 1, "one chain");
    assert_eq!(report.interrupted, [2]);
    assert_eq!(report.torn_line, None);
}

/// A sink that allows inline writes and notes which thread wrote each
/// batch; optionally holds the first batch a caller writes inline until
/// released.
struct Inline {
    batches: Mutex<Vec<(Option<String>, Vec<String>)>>,
    hold_first: Option<(
        std::sync::mpsc::Sender<()>,
        Mutex<std::sync::mpsc::Receiver<()>>,
    )>,
}

struct InlineSink(Arc<Inline>);

impl AuditSink for InlineSink {
    fn write_line(&self, _line: &str) -> std::io::Result<()> {
        unreachable!("the writer writes batches")
    }

    fn write_batch(&self, lines: &[String]) -> std::io::Result<()> {
        let first = self.0.batches.lock().expect("lock").is_empty();
        let caller = std::thread::current().name() != Some("portcullis-audit");
        if let (true, true, Some((started, release))) = (first, caller, &self.0.hold_first) {
            let _ = started.send(());
            let _ = release.lock().expect("lock").recv();
        }
        let thread = std::thread::current().name().map(String::from);
        self.0
            .batches
            .lock()
            .expect("lock")
            .push((thread, lines.to_vec()));
        Ok(())
    }

    fn writes_inline(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_sink_that_allows_it_is_written_on_the_calling_thread() {
    let sink = Arc::new(Inline {
        batches: Mutex::new(Vec::new()),
        hold_first: None,
    });
    let log = AuditLog::new(Some(Arc::new(InlineSink(Arc::clone(&sink))))).expect("writer");
    log.record(event("a.b")).await.expect("written");
    log.record(event("a.c")).await.expect("written");
    let batches = sink.batches.lock().expect("lock");
    let here = std::thread::current().name().map(String::from);
    let threads: Vec<_> = batches.iter().map(|(thread, _)| thread.clone()).collect();
    assert_eq!(
        threads,
        [here.clone(), here],
        "no handoff to the writer thread"
    );
}

#[tokio::test]
async fn records_queued_during_an_inline_write_follow_it_in_the_chain() {
    let (started, busy) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel();
    let sink = Arc::new(Inline {
        batches: Mutex::new(Vec::new()),
        hold_first: Some((started, Mutex::new(released))),
    });
    let log =
        Arc::new(AuditLog::new(Some(Arc::new(InlineSink(Arc::clone(&sink))))).expect("writer"));
    // A caller writes its record inline and is held inside the sink.
    let caller = {
        let log = Arc::clone(&log);
        std::thread::Builder::new()
            .name("first-caller".into())
            .spawn(move || log.send(event("a.first")))
            .expect("spawn")
    };
    busy.recv().expect("the first caller is writing");
    // Meanwhile ten more: the pen is taken, so they go to the writer
    // thread, which must wait for the inline write to end.
    let rest: Vec<Ack> = (0..10).map(|_| log.send(event("a.more"))).collect();
    // Time for the writer thread to write them now if it wrongly would (the
    // outcome checked below does not depend on it when the pen is kept).
    std::thread::sleep(std::time::Duration::from_millis(100));
    release.send(()).expect("release");
    caller
        .join()
        .expect("the first caller")
        .written()
        .await
        .expect("written");
    for ack in rest {
        ack.written().await.expect("written");
    }
    let batches = sink.batches.lock().expect("lock");
    // The inline record first; the ten after it, by the writer thread (in
    // one batch or more, depending on when it woke).
    let (first_thread, first_lines) = &batches[0];
    assert_eq!(first_thread.as_deref(), Some("first-caller"));
    assert_eq!(first_lines.len(), 1);
    assert!(
        batches[1..]
            .iter()
            .all(|(thread, _)| thread.as_deref() == Some("portcullis-audit")),
        "{batches:?}"
    );
    assert_eq!(batches[1..].iter().map(|(_, l)| l.len()).sum::<usize>(), 10);
    // One chain, in queue order: the inline record first.
    let lines: Vec<&String> = batches.iter().flat_map(|(_, lines)| lines).collect();
    let mut prev = GENESIS.to_string();
    for (i, line) in lines.iter().enumerate() {
        let record: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(record["seq"], i as u64 + 1, "{line}");
        assert_eq!(record["prev"], prev.as_str(), "{line}");
        prev = sha256_hex(line.as_bytes());
    }
    assert!(lines[0].contains("a.first"), "{}", lines[0]);
}
