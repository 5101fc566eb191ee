//! The audit log: one JSON Lines record per event, in one hash chain per
//! sink.
//!
//! Every record is one line:
//!
//! ```text
//! {"chain":"chain-9f1c…","seq":7,"prev":"<sha256 of seq 6's line>","writer":"portcullis-4242-…","time_ms":1767225600000,"event":"call_ended",…}
//! ```
//!
//! - `chain` names the chain, `seq` counts its records from 1, and `prev`
//!   is the sha256 of the exact bytes of the chain's previous line (64
//!   zeros for `seq` 1). A file is one chain across processes: each batch
//!   is written under a lock on the file and continues the chain its last
//!   line ends, so deleting one process's records breaks the chain.
//!   `writer` names the host instance that wrote the record. A sink that
//!   is the host's alone (stderr, a custom [`AuditSink`]) gets a chain of
//!   its own; [`verify_log`] follows every chain it finds.
//! - Records are serialised by serde_json, which escapes every control
//!   character: arguments with newlines, ANSI escapes or fake JSON stay
//!   inside one string of one line.
//! - Records are written by one thread per sink (`writer`), off the call
//!   path, in batches (one write and at most one fsync each); a call waits
//!   for the acknowledgement of its records, so each is written before the
//!   call returns, before the plugin runs for the `call_started` and
//!   approval records, and before a request leaves for `egress_sent`. A
//!   record that cannot be written fails the call with
//!   [`Error::Audit`](crate::Error::Audit).
//! - Every string of every record is scrubbed of the host's secret values
//!   (raw and encoded) before it is serialised: arguments, errors, reasons.
//!
//! A chain without a key shows edits, deletions, reorderings and insertions
//! made by anyone who does not recompute the hashes after them; against
//! someone who can rewrite the whole file or cut its end, keep a head
//! checkpoint ([`AuditHead`]) where they cannot, or ship the records
//! elsewhere through an [`AuditSink`].

mod sink;
mod verify;
mod writer;

pub use sink::{AuditSink, FileSink, SinkTail, StderrSink};
pub use verify::{AuditHead, AuditReport, AuditTamper, TamperKind, verify_log};

use crate::error::Error;
use crate::secrets::Scrubber;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use writer::{Job, Writer};

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

/// How a call reached the host through a protocol server (the MCP server,
/// or an embedder's own): recorded as fields of its `call_started` record.
/// The client's name and version are what the client says; only
/// `authenticated` was checked (on HTTP, the name of the bearer token it
/// presented).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CallOrigin {
    /// `stdio` or `http`.
    pub transport: String,
    /// The protocol version the client speaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// The client's name, as it states it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The client's version, as it states it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// The identity the transport authenticated (HTTP: the token's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<String>,
}

impl CallOrigin {
    /// A call that came over `transport`; the other fields are unknown.
    pub fn new(transport: impl Into<String>) -> CallOrigin {
        CallOrigin {
            transport: transport.into(),
            ..CallOrigin::default()
        }
    }
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
        /// sha256 of the bytes of the manifest it was loaded from (none
        /// for a host built in code).
        manifest_sha256: Option<String>,
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
    /// A plugin was refused at load (its pin, its imports, its grants):
    /// the host did not start.
    PluginRefused {
        /// Plugin name.
        plugin: String,
        /// Its source as configured.
        source: PathBuf,
        /// The sha256 its configuration pins, if any.
        pinned_sha256: Option<String>,
        /// sha256 of the bytes of the manifest (none for a host built in
        /// code).
        manifest_sha256: Option<String>,
        /// Why, as the error says it.
        reason: String,
    },
    /// A call passed argument validation and is about to be decided on.
    CallStarted {
        /// Call id, unique per writer.
        call_id: u64,
        /// Who called, from the call context.
        caller: Option<String>,
        /// How the call came (transport, protocol version, client,
        /// authenticated identity), when a protocol server set it: its
        /// fields are fields of the record.
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        origin: Option<CallOrigin>,
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
        /// `invalid_output`, `approval_denied`, `approval_timed_out`,
        /// `suspicious`, `audit_failed`, `internal`, or `abandoned` (the
        /// call's future was dropped before it ended: the other fields say
        /// only what was known then).
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
        /// Which approver decided: `client` (the call's own approver,
        /// e.g. the MCP client's user through elicitation) or `operator`
        /// (the host's approver: a terminal prompt, `portcullis call
        /// --approve`, or the default that denies).
        approver: &'static str,
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
    /// An outbound request passed every check and is about to be sent:
    /// written (and acknowledged) before any byte of it leaves. Its
    /// outcome follows as an `egress` record with the same `request`,
    /// unless the call ended (or was abandoned) first.
    EgressSent {
        /// Call id.
        call_id: u64,
        /// `plugin.tool`.
        tool: String,
        /// The request's number in the call.
        request: u32,
        /// HTTP method.
        method: String,
        /// Destination as checked (scheme, host, port, path; no query).
        destination: String,
        /// The name of the secret attached, if any (never the value).
        secret: Option<String>,
    },
    /// The MCP server refused an HTTP request before it reached the
    /// protocol (wrong `Host`, foreign `Origin`, missing or wrong token,
    /// body too large or too deep).
    HttpRefused {
        /// The client's address.
        peer: String,
        /// The HTTP status answered.
        status: u16,
        /// Why.
        reason: String,
    },
    /// An outbound request's outcome, allowed or not.
    Egress {
        /// Call id.
        call_id: u64,
        /// `plugin.tool`.
        tool: String,
        /// The request's number in the call, as in its `egress_sent`
        /// record; none for a request refused before the gate's checks.
        request: Option<u32>,
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

/// The fields a record's body starts with; the writer puts `chain`, `seq`
/// and `prev` before them.
#[derive(Serialize)]
struct Record<'a, E: Serialize> {
    writer: &'a str,
    time_ms: u64,
    #[serde(flatten)]
    event: &'a E,
}

/// The host's audit log: scrubs and serialises records on the caller's
/// thread and queues them, in order, to its sink's writer thread.
pub(crate) struct AuditLog {
    writer: String,
    queue: Option<Writer>,
    scrubber: Arc<Scrubber>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("writer", &self.writer)
            .field("sink", &self.queue.is_some())
            .finish_non_exhaustive()
    }
}

/// A queued record's acknowledgement: await [`Ack::written`] before
/// anything the record must precede.
#[must_use = "a record is only known written once its ack is awaited"]
pub(crate) struct Ack(AckState);

enum AckState {
    Done(Result<(), Error>),
    Waiting(oneshot::Receiver<writer::Written>),
}

impl Ack {
    /// Waits until the record is written.
    ///
    /// # Errors
    ///
    /// [`Error::Audit`] if it could not be serialised or written.
    pub(crate) async fn written(self) -> Result<(), Error> {
        match self.0 {
            AckState::Done(result) => result,
            AckState::Waiting(rx) => match rx.await {
                Ok(written) => written.map_err(Error::Audit),
                Err(_) => Err(Error::Audit("the audit writer has stopped".into())),
            },
        }
    }
}

impl AuditLog {
    /// A log under a fresh writer id (`portcullis-PID-RANDOM`) with its
    /// writer thread; `None` records nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Audit`] if the writer thread cannot be started.
    pub(crate) fn new(sink: Option<Arc<dyn AuditSink>>) -> Result<AuditLog, Error> {
        let queue = sink
            .map(Writer::start)
            .transpose()
            .map_err(|e| Error::Audit(format!("failed to start the audit writer: {e}")))?;
        Ok(AuditLog {
            writer: format!(
                "portcullis-{}-{:016x}",
                std::process::id(),
                crate::hash::random_u64()
            ),
            queue,
            scrubber: Arc::new(Scrubber::default()),
        })
    }

    /// Scrubs `scrubber`'s secrets from every string of every record.
    pub(crate) fn scrubbing(mut self, scrubber: Arc<Scrubber>) -> AuditLog {
        self.scrubber = scrubber;
        self
    }

    /// Queues one record (its place in the chain is fixed now) and returns
    /// its acknowledgement.
    pub(crate) fn send(&self, event: AuditEvent) -> Ack {
        if self.queue.is_none() {
            // No sink: nothing to build, write or wait for.
            return Ack(AckState::Done(Ok(())));
        }
        let (tx, rx) = oneshot::channel();
        match self.queue(event, Some(tx)) {
            Ok(true) => Ack(AckState::Waiting(rx)),
            Ok(false) => Ack(AckState::Done(Ok(()))),
            Err(e) => Ack(AckState::Done(Err(e))),
        }
    }

    /// Writes one record: queued, then awaited.
    ///
    /// # Errors
    ///
    /// [`Error::Audit`] if the record could not be serialised or written;
    /// the chain does not advance then.
    pub(crate) async fn record(&self, event: AuditEvent) -> Result<(), Error> {
        self.send(event).written().await
    }

    /// Queues one record nobody waits for (from a drop guard); a failure is
    /// logged by the writer.
    pub(crate) fn record_detached(&self, event: AuditEvent) {
        if let Err(e) = self.queue(event, None) {
            tracing::warn!(error = %e, "failed to record an audit event");
        }
    }

    /// Scrubs, serialises and queues; `Ok(false)` without a sink.
    fn queue(
        &self,
        event: AuditEvent,
        ack: Option<oneshot::Sender<writer::Written>>,
    ) -> Result<bool, Error> {
        let Some(queue) = &self.queue else {
            return Ok(false);
        };
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut rest = if self.scrubber.is_empty() {
            // No secret value is known: nothing to scrub, serialised once.
            self.body(time_ms, &event)?
        } else {
            // Scrubbed as a JSON value, string by string, so a replacement
            // can never break the record's structure.
            let mut value = serde_json::to_value(&event).map_err(serialise_failed)?;
            self.scrubber.scrub_json(&mut value);
            self.body(time_ms, &value)?
        };
        // `{"writer":…}` -> `"writer":…}`: the writer prepends the chain.
        rest.drain(..1);
        queue.push(Job { rest, ack }).map_err(Error::Audit)?;
        Ok(true)
    }

    /// A record's body: the writer, the time and `event`'s fields.
    fn body(&self, time_ms: u64, event: &impl Serialize) -> Result<String, Error> {
        serde_json::to_string(&Record {
            writer: &self.writer,
            time_ms,
            event,
        })
        .map_err(serialise_failed)
    }

    /// The head of the chain this host last wrote to, if it wrote
    /// anything.
    pub(crate) fn head(&self) -> Option<AuditHead> {
        let queue = self.queue.as_ref()?;
        queue
            .head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn serialise_failed(e: serde_json::Error) -> Error {
    Error::Audit(format!("failed to serialise a record: {e}"))
}

/// How a call ended, as its `call_ended` record says it: the outcome and,
/// for a limit, which one.
pub(crate) fn outcome(error: Option<&Error>) -> (&'static str, Option<&'static str>) {
    match error {
        None => ("ok", None),
        Some(e) => match e.kind() {
            // Not a call's failure; should one end a call, it is the host's.
            "load" => ("internal", None),
            kind => (kind, e.limit().map(|limit| limit.as_str())),
        },
    }
}

#[cfg(test)]
mod tests;
