//! The audit writer: it chains each batch of records (continuing the
//! sink's chain under its lock when the sink is shared), writes it with one
//! write and at most one fsync (group commit), then acknowledges every
//! record of the batch. Calls hand it records already scrubbed and
//! serialised (once, on the caller's thread), in the order they happen, and
//! wait for their acknowledgements, so a call's records are written before
//! it returns.
//!
//! Who writes: a sink whose writes are short local syscalls
//! ([`AuditSink::writes_inline`], a file without fsync) is written on the
//! caller's own thread when no batch is in progress and none is queued,
//! which spares the two thread handoffs per record that dominate a call's
//! cost otherwise; every other record goes to the sink's writer thread,
//! which waits for an inline write in progress to finish, so the chain
//! keeps the order in which records were queued. No lock of this process
//! is held while the sink does I/O.

use super::{AuditHead, AuditSink, GENESIS, SinkTail};
use crate::hash::sha256_hex;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
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

/// The writer of one sink: its thread, the queue to it, and who holds the
/// pen.
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    /// The last record this host wrote, updated after each batch.
    pub(super) head: Arc<Mutex<Option<AuditHead>>>,
}

/// What the callers and the thread share.
struct Shared {
    sink: Arc<dyn AuditSink>,
    /// Whether callers may write on their own thread.
    inline: bool,
    pen: Mutex<Pen>,
    /// Signalled when a batch ends.
    free: Condvar,
}

/// Who is writing, what is queued for the thread, and where the chain is.
struct Pen {
    /// A batch is being written (by a caller or the thread).
    writing: bool,
    /// Records sent to the thread and not yet written.
    queued: usize,
    /// The host's own chain.
    own: Tip,
}

impl Shared {
    fn pen(&self) -> MutexGuard<'_, Pen> {
        self.pen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `batch` holding the pen (taken by the caller), then gives it
    /// back, also if the sink panics, so no later record waits forever.
    fn write_holding_pen(&self, batch: &[Job], head: &Mutex<Option<AuditHead>>) -> Written {
        struct Release<'a>(&'a Shared, Tip);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                let mut pen = self.0.pen();
                pen.writing = false;
                pen.own = self.1.clone();
                drop(pen);
                self.0.free.notify_all();
            }
        }
        let own = self.pen().own.clone();
        let mut release = Release(self, own);
        write(&*self.sink, &mut release.1, batch, head)
    }
}

impl Writer {
    pub(super) fn start(sink: Arc<dyn AuditSink>) -> std::io::Result<Writer> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let head = Arc::new(Mutex::new(None));
        let shared = Arc::new(Shared {
            inline: sink.writes_inline(),
            sink,
            pen: Mutex::new(Pen {
                writing: false,
                queued: 0,
                own: Tip::fresh(),
            }),
            free: Condvar::new(),
        });
        let (thread_shared, thread_head) = (Arc::clone(&shared), Arc::clone(&head));
        let thread = std::thread::Builder::new()
            .name("portcullis-audit".into())
            .spawn(move || run(&thread_shared, &jobs, &thread_head))?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
            shared,
            head,
        })
    }

    /// Queues a record, or writes it right away on this thread when the
    /// sink allows it and nothing else is being written or waits; the
    /// order of `push`es is the order in the chain.
    pub(super) fn push(&self, job: Job) -> Result<(), String> {
        let Some(queue) = &self.queue else {
            return Err("the audit writer has stopped".into());
        };
        let mut pen = self.shared.pen();
        if self.shared.inline && !pen.writing && pen.queued == 0 {
            pen.writing = true;
            drop(pen);
            let batch = [job];
            let written = self.shared.write_holding_pen(&batch, &self.head);
            let [job] = batch;
            acknowledge(job, &written);
            return Ok(());
        }
        // Sent under the pen's lock: the thread's queue keeps push order.
        queue
            .send(job)
            .map_err(|_| "the audit writer has stopped".to_string())?;
        pen.queued += 1;
        Ok(())
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

fn run(shared: &Shared, jobs: &mpsc::Receiver<Job>, head: &Mutex<Option<AuditHead>>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Wait for a caller's inline write to end, then take the pen.
        let mut pen = shared.pen();
        while pen.writing {
            pen = shared
                .free
                .wait(pen)
                .unwrap_or_else(PoisonError::into_inner);
        }
        pen.writing = true;
        pen.queued -= batch.len();
        drop(pen);
        let written = shared.write_holding_pen(&batch, head);
        for job in batch {
            acknowledge(job, &written);
        }
    }
    if let Err(e) = shared.sink.flush() {
        tracing::warn!(error = %e, "failed to flush the audit sink");
    }
}

/// Tells `job`'s caller how its record's writing ended, or logs a failure
/// nobody waits for.
fn acknowledge(job: Job, written: &Written) {
    match job.ack {
        // The caller may be gone (an abandoned call): fine.
        Some(ack) => {
            let _ = ack.send(written.clone());
        }
        None => {
            if let Err(e) = written {
                tracing::warn!(error = %e, "failed to write an audit record");
            }
        }
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
