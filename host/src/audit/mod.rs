//! The audit log: one JSON Lines record per event, hash-chained per writer.
//!
//! Every record is one line:
//!
//! ```text
//! {"writer":"portcullis-4242-9f1c…","seq":7,"prev":"<sha256 of seq 6's line>","time_ms":1767225600000,"event":"call_ended",…}
//! ```
//!
//! - `writer` names one host instance, `seq` counts its records from 1, and
//!   `prev` is the sha256 of the exact bytes of that writer's previous line
//!   (64 zeros for `seq` 1). Several hosts may share one sink: each keeps
//!   its own chain, and [`verify_log`] follows them all.
//! - Records are serialised by serde_json, which escapes every control
//!   character: arguments with newlines, ANSI escapes or fake JSON stay
//!   inside one string of one line.
//! - The host writes a record (one `write(2)` for the file sink) before the
//!   call's result is returned, and before the plugin runs for the
//!   `call_started` and approval records. A record that cannot be written
//!   fails the call with [`Error::Audit`](crate::Error::Audit).
//!
//! - Every string of every record is scrubbed of the host's secret values
//!   (raw and encoded) before it is serialised: arguments, errors, reasons.
//!
//! A chain without a key shows edits, deletions, reorderings and insertions
//! made by anyone who does not recompute the hashes after them; against
//! someone who can rewrite the whole file, keep a head checkpoint
//! ([`AuditHead`]) where they cannot, or ship the records elsewhere through
//! an [`AuditSink`].

mod sink;
mod verify;

pub use sink::{AuditSink, FileSink, StderrSink};
pub use verify::{AuditHead, AuditReport, AuditTamper, TamperKind, verify_log};

use crate::error::Error;
use crate::hash::sha256_hex;
use crate::secrets::Scrubber;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of a call's arguments kept in its `call_started` record; the size
/// and the sha256 of the canonical arguments are always recorded.
pub const MAX_RECORDED_ARGUMENTS: usize = 4 * 1024;

/// `prev` of a writer's first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A directory grant as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct DirRecord {
    /// Host directory.
    pub host: PathBuf,
    /// Path the plugin sees.
    pub guest: String,
    /// `read-only` or `read-write`.
    pub mode: &'static str,
}

/// What happened. Serialised with an `event` tag in snake case.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// A plugin was loaded and pinned.
    PluginLoaded {
        /// Plugin name.
        plugin: String,
        /// The pinned sha256 of its bytes.
        sha256: String,
        /// sha256 of the canonical JSON of its tool list, so a changed tool
        /// definition shows even under the same name.
        tool_list_sha256: String,
        /// Its tools.
        tools: Vec<String>,
        /// Directory grants.
        dirs: Vec<DirRecord>,
        /// Names of the environment variables it sees.
        env: Vec<String>,
        /// HTTP destinations, as normalised allowlist entries.
        http: Vec<String>,
        /// Names of the secrets it may have attached to its requests.
        secrets: Vec<String>,
    },
    /// A call passed argument validation and is about to be decided on.
    CallStarted {
        /// Call id, unique per writer.
        call_id: u64,
        /// Who called, from the call context.
        caller: Option<String>,
        /// `plugin.tool`.
        tool: String,
        /// The plugin's sha256.
        plugin_sha256: String,
        /// The arguments as received, cut to [`MAX_RECORDED_ARGUMENTS`].
        arguments: String,
        /// Their full size in bytes.
        arguments_bytes: usize,
        /// Whether `arguments` was cut.
        arguments_truncated: bool,
        /// sha256 of the canonical arguments (what approvals bind to).
        arguments_sha256: String,
    },
    /// A call ended, however it ended.
    CallEnded {
        /// Call id.
        call_id: u64,
        /// `plugin.tool`.
        tool: String,
        /// `ok`, `tool_error`, `limit`, `crashed`, `cancelled`,
        /// `invalid_output`, `approval_denied`, `suspicious`,
        /// `audit_failed`, `internal`.
        outcome: &'static str,
        /// The error message, if it failed.
        error: Option<String>,
        /// The limit hit, if any.
        limit: Option<&'static str>,
        /// Whether the call was cancelled.
        cancelled: bool,
        /// Fuel used (0 if the plugin did not run).
        fuel_used: u64,
        /// Wall-clock time in microseconds, approval included.
        duration_us: u64,
        /// Bytes of the output JSON, if there was one.
        output_bytes: Option<usize>,
        /// Bytes the plugin wrote to stdout (kept and discarded).
        stdout_bytes: u64,
        /// Bytes the plugin wrote to stderr (kept and discarded).
        stderr_bytes: u64,
        /// Log messages the plugin sent (kept and dropped).
        log_messages: u64,
    },
    /// The host asked the approver.
    ApprovalRequested {
        /// Call id.
        call_id: u64,
        /// `plugin.tool`.
        tool: String,
        /// The plugin's sha256.
        plugin_sha256: String,
        /// sha256 of the canonical arguments.
        arguments_sha256: String,
        /// The tool's effect as the host sees it.
        effect: &'static str,
        /// Why approval is needed.
        reason: String,
    },
    /// The approval was granted or refused.
    ApprovalDecided {
        /// Call id.
        call_id: u64,
        /// `plugin.tool`.
        tool: String,
        /// Whether the call may run.
        approved: bool,
        /// Who decided, as the approver said.
        by: Option<String>,
        /// Why (for a refusal, or a rejected approval).
        reason: Option<String>,
    },
    /// Something the call tried was refused by the host's policy.
    Denied {
        /// Call id.
        call_id: u64,
        /// `plugin.tool`.
        tool: String,
        /// What kind: `approval` or `egress`.
        kind: &'static str,
        /// Why.
        reason: String,
        /// Denials of this call so far, this one included.
        denials: u32,
    },
    /// The call piled up more denials than allowed and was stopped.
    Suspicious {
        /// Call id.
        call_id: u64,
        /// `plugin.tool`.
        tool: String,
        /// Denials of this call.
        denials: u32,
    },
    /// The output matched known prompt-injection patterns (it was not
    /// changed).
    OutputFlagged {
        /// Call id.
        call_id: u64,
        /// `plugin.tool`.
        tool: String,
        /// The patterns and where they matched.
        flags: Vec<String>,
    },
    /// An outbound request, allowed or not.
    Egress {
        /// Call id.
        call_id: u64,
        /// `plugin.tool`.
        tool: String,
        /// HTTP method.
        method: String,
        /// Destination as checked (scheme, host, port, path; no query).
        destination: String,
        /// Whether it left the host (refused requests did not).
        allowed: bool,
        /// The response status, if one came back.
        status: Option<u16>,
        /// Bytes of the response body handed to the plugin.
        bytes: Option<u64>,
        /// Why it was refused or failed, if it was.
        reason: Option<String>,
        /// The name of the secret the request asked the host to attach (the
        /// value is never recorded).
        secret: Option<String>,
    },
}

#[derive(Serialize)]
struct Record<'a> {
    writer: &'a str,
    seq: u64,
    prev: &'a str,
    time_ms: u64,
    #[serde(flatten)]
    event: &'a serde_json::Value,
}

struct Chain {
    seq: u64,
    prev: String,
}

/// The host's writer: numbers, chains and writes records to its sink.
pub(crate) struct AuditLog {
    writer: String,
    sink: Option<Arc<dyn AuditSink>>,
    chain: Mutex<Chain>,
    scrubber: Arc<Scrubber>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("writer", &self.writer)
            .field("sink", &self.sink.is_some())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// A writer with a fresh id (`portcullis-PID-RANDOM`); `None` records
    /// nothing.
    pub(crate) fn new(sink: Option<Arc<dyn AuditSink>>) -> AuditLog {
        AuditLog {
            writer: format!(
                "portcullis-{}-{:016x}",
                std::process::id(),
                crate::hash::random_u64()
            ),
            sink,
            chain: Mutex::new(Chain {
                seq: 0,
                prev: GENESIS.to_string(),
            }),
            scrubber: Arc::new(Scrubber::default()),
        }
    }

    /// Scrubs `scrubber`'s secrets from every string of every record.
    pub(crate) fn scrubbing(mut self, scrubber: Arc<Scrubber>) -> AuditLog {
        self.scrubber = scrubber;
        self
    }

    /// Writes one record.
    ///
    /// # Errors
    ///
    /// [`Error::Audit`] if the record could not be serialised or written;
    /// the chain does not advance then.
    pub(crate) fn record(&self, event: AuditEvent) -> Result<(), Error> {
        let Some(sink) = &self.sink else {
            return Ok(());
        };
        // Scrubbed as a JSON value, string by string, so a replacement can
        // never break the record's structure.
        let mut event = serde_json::to_value(&event)
            .map_err(|e| Error::Audit(format!("failed to serialise a record: {e}")))?;
        self.scrubber.scrub_json(&mut event);
        let mut chain = self
            .chain
            .lock()
            .map_err(|_| Error::Audit("the audit chain lock is poisoned".into()))?;
        let seq = chain.seq + 1;
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let line = serde_json::to_string(&Record {
            writer: &self.writer,
            seq,
            prev: &chain.prev,
            time_ms,
            event: &event,
        })
        .map_err(|e| Error::Audit(format!("failed to serialise a record: {e}")))?;
        sink.write_line(&line)
            .map_err(|e| Error::Audit(format!("failed to write record {seq}: {e}")))?;
        chain.seq = seq;
        chain.prev = sha256_hex(line.as_bytes());
        Ok(())
    }

    /// The head of this writer's chain, if it wrote anything.
    pub(crate) fn head(&self) -> Option<AuditHead> {
        let chain = self.chain.lock().ok()?;
        (chain.seq > 0).then(|| AuditHead {
            writer: self.writer.clone(),
            seq: chain.seq,
            sha256: chain.prev.clone(),
        })
    }

    pub(crate) fn flush(&self) {
        if let Some(sink) = &self.sink
            && let Err(e) = sink.flush()
        {
            tracing::warn!(error = %e, "failed to flush the audit sink");
        }
    }
}

/// How a call ended, as its `call_ended` record says it: the outcome and,
/// for a limit, which one.
pub(crate) fn outcome(error: Option<&Error>) -> (&'static str, Option<&'static str>) {
    match error {
        None => ("ok", None),
        Some(Error::Tool { .. }) => ("tool_error", None),
        Some(Error::LimitExceeded { limit, .. }) => ("limit", Some(limit.as_str())),
        Some(Error::Crashed { .. }) => ("crashed", None),
        Some(Error::Cancelled { .. }) => ("cancelled", None),
        Some(Error::InvalidOutput { .. }) => ("invalid_output", None),
        Some(Error::ApprovalDenied { .. }) => ("approval_denied", None),
        Some(Error::Suspicious { .. }) => ("suspicious", None),
        Some(Error::Audit(_)) => ("audit_failed", None),
        Some(_) => ("internal", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn records_chain_by_the_hash_of_the_previous_line() {
        let memory = Arc::new(Memory::default());
        let log = AuditLog::new(Some(Arc::new(memory.clone())));
        log.record(event("a.b")).expect("write");
        log.record(event("a.c")).expect("write");
        let lines = memory.0.lock().expect("lock").clone();
        let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
        let second: serde_json::Value = serde_json::from_str(&lines[1]).expect("json");
        assert_eq!(first["seq"], 1);
        assert_eq!(first["prev"], GENESIS);
        assert_eq!(first["event"], "denied");
        assert_eq!(second["seq"], 2);
        assert_eq!(second["prev"], sha256_hex(lines[0].as_bytes()));
        let head = log.head().expect("head");
        assert_eq!(head.seq, 2);
        assert_eq!(head.sha256, sha256_hex(lines[1].as_bytes()));
        let text = lines.join("\n") + "\n";
        let report = verify_log(text.as_bytes(), &[head]).expect("intact");
        assert_eq!(report.records, 2);
    }

    #[test]
    fn control_characters_cannot_split_a_record() {
        let memory = Arc::new(Memory::default());
        let log = AuditLog::new(Some(Arc::new(memory.clone())));
        log.record(event("x\n{\"seq\":9}\r\u{1b}[2J\u{2028}"))
            .expect("write");
        let lines = memory.0.lock().expect("lock").clone();
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains(['\n', '\r', '\u{1b}']), "{}", lines[0]);
    }

    #[test]
    fn every_string_of_a_record_is_scrubbed() {
        let memory = Arc::new(Memory::default());
        let scrubber = Arc::new(Scrubber::new([(
            "api",
            &crate::Secret::new("tok-0123456789"),
        )]));
        let log = AuditLog::new(Some(Arc::new(memory.clone()))).scrubbing(scrubber);
        log.record(AuditEvent::Denied {
            call_id: 1,
            tool: "a.b".into(),
            kind: "approval",
            reason: "echoed tok-0123456789 and dG9rLTAxMjM0NTY3ODk=".into(),
            denials: 1,
        })
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
}
