//! The audit writer: one thread per sink, off the call path. Calls hand it
//! records already scrubbed and serialised (once, on the caller's thread),
//! in the order they happen; the thread takes whatever has queued up as
//! one batch, chains it (continuing the sink's chain under its lock when
//! the sink is shared), writes it with one write and at most one fsync
//! (group commit), then acknowledges every record of the batch. A call
//! waits for its acknowledgements, so its records are written before it
//! returns; no lock of this process is held while the sink does I/O.

use super::{AuditHead, AuditSink, GENESIS, SinkTail};
use crate::hash::sha256_hex;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// Records written in one batch at most.
const MAX_BATCH: usize = 1024;

/// What a record's writing came to: `Err` holds the reason it failed.
pub(super) type Written = Result<(), String>;

/// One record for the writer: its fields after `seq` and `prev`, as JSON
/// text without the opening brace (`"writer":…,"event":…}`).
pub(super) struct Job {
    pub(super) rest: String,
    /// Told when the record is written (or failed); `None` for a record
    /// nobody waits for (the record of an abandoned call).
    pub(super) ack: Option<oneshot::Sender<Written>>,
}

/// The chain the writer continues.
#[derive(Clone)]
struct Tip {
    chain: String,
    seq: u64,
    prev: String,
}

impl Tip {
    fn fresh() -> Tip {
        Tip {
            chain: format!("chain-{:016x}", crate::hash::random_u64()),
            seq: 0,
            prev: GENESIS.to_string(),
        }
    }

    /// The tip after `line`, the last record of a shared sink; a line that
    /// is not a record starts a new chain (verify reports the line).
    fn after(line: &[u8]) -> Tip {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
            return Tip::fresh();
        };
        let chain = value["chain"].as_str().or_else(|| value["writer"].as_str());
        match (chain, value["seq"].as_u64()) {
            (Some(chain), Some(seq)) => Tip {
                chain: chain.to_string(),
                seq,
                prev: sha256_hex(line),
            },
            _ => Tip::fresh(),
        }
    }
}

/// The writer thread of one sink, and the queue to it.
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The last record this host wrote, updated after each batch.
    pub(super) head: Arc<Mutex<Option<AuditHead>>>,
}

impl Writer {
    pub(super) fn start(sink: Arc<dyn AuditSink>) -> std::io::Result<Writer> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let head = Arc::new(Mutex::new(None));
        let shared = Arc::clone(&head);
        let thread = std::thread::Builder::new()
            .name("portcullis-audit".into())
            .spawn(move || run(&*sink, &jobs, &shared))?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
            head,
        })
    }

    /// Queues a record; the order of `push`es is the order in the chain.
    pub(super) fn push(&self, job: Job) -> Result<(), String> {
        match &self.queue {
            Some(queue) => queue
                .send(job)
                .map_err(|_| "the audit writer has stopped".to_string()),
            None => Err("the audit writer has stopped".into()),
        }
    }
}

impl Drop for Writer {
    /// Writes what is queued, flushes the sink and ends the thread.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the audit writer panicked");
        }
    }
}

fn run(sink: &dyn AuditSink, jobs: &mpsc::Receiver<Job>, head: &Mutex<Option<AuditHead>>) {
    let mut own = Tip::fresh();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let written = write(sink, &mut own, &batch, head);
        for job in batch {
            match job.ack {
                Some(ack) => {
                    // The caller may be gone (an abandoned call): fine.
                    let _ = ack.send(written.clone());
                }
                None => {
                    if let Err(e) = &written {
                        tracing::warn!(error = %e, "failed to write an audit record");
                    }
                }
            }
        }
    }
    if let Err(e) = sink.flush() {
        tracing::warn!(error = %e, "failed to flush the audit sink");
    }
}

/// Chains and writes one batch.
fn write(
    sink: &dyn AuditSink,
    own: &mut Tip,
    batch: &[Job],
    head: &Mutex<Option<AuditHead>>,
) -> Written {
    let tail = sink
        .lock_tail()
        .map_err(|e| format!("failed to lock the audit sink: {e}"))?;
    let mut tip = match tail {
        SinkTail::Own => own.clone(),
        SinkTail::Empty => Tip::fresh(),
        SinkTail::Last(line) => Tip::after(&line),
    };
    let first = tip.seq + 1;
    // A chain id read back from a shared sink is data: escaped as JSON.
    let chain = serde_json::to_string(&tip.chain).unwrap_or_else(|_| "\"\"".into());
    let mut lines = Vec::with_capacity(batch.len());
    for job in batch {
        tip.seq += 1;
        let line = format!(
            r#"{{"chain":{chain},"seq":{},"prev":"{}",{}"#,
            tip.seq, tip.prev, job.rest
        );
        tip.prev = sha256_hex(line.as_bytes());
        lines.push(line);
    }
    let result = sink.write_batch(&lines);
    sink.unlock();
    result.map_err(|e| match batch.len() {
        1 => format!("failed to write record {first}: {e}"),
        n => format!(
            "failed to write records {first}..{}: {e}",
            first + n as u64 - 1
        ),
    })?;
    *head.lock().unwrap_or_else(PoisonError::into_inner) = Some(AuditHead {
        chain: tip.chain.clone(),
        seq: tip.seq,
        sha256: tip.prev.clone(),
    });
    *own = tip;
    Ok(())
}
