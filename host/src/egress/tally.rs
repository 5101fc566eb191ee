//! What one call's requests have done so far, and the call's one audit
//! trail: how many requests were made (against `http_requests`), each
//! attempt written to the audit log as it happens, and the call's one
//! denial budget ([`CallLog`], shared with the approval gate). The gate's
//! steps never touch it; [`CallEgress::send`] and the gate's last step
//! write the records: `egress_sent` before any byte of a request may
//! leave, `egress` with its outcome after.

use super::CallEgress;
use super::gate::Refusal;
use super::request::{EgressError, EgressRecord, GuestResponse, refused_record};
use crate::audit::{AuditEvent, AuditLog};
use crate::error::Error;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio_util::sync::CancellationToken;

/// What one call's requests have done so far.
#[derive(Default)]
pub(super) struct Tally {
    requests: u32,
    /// The method of each request that reached the gate, by slot.
    methods: Vec<String>,
}

/// Proof that [`CallEgress::reserve`] counted a request.
pub(crate) struct Reservation(());

/// The call was stopped: it piled up more denials than allowed. Returned as
/// a trap from the host function so the instance ends at once.
#[derive(Debug)]
pub(crate) struct Suspicious(pub(crate) u32);

impl std::fmt::Display for Suspicious {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped as suspicious after {} denials", self.0)
    }
}

impl std::error::Error for Suspicious {}

/// One call's audit trail: its id and tool for every record, and its one
/// denial budget. Refused approvals (the host) and refused requests (the
/// gate) both count here, as they happen; the one past `max_denials`
/// stops the call.
pub(crate) struct CallLog {
    log: Arc<AuditLog>,
    call_id: u64,
    /// `plugin.tool`.
    tool: String,
    max_denials: u32,
    denials: Mutex<u32>,
    /// Cancelled when the call piles up more denials than allowed.
    stopped: CancellationToken,
    /// The first record the gate could not write: the call fails with it.
    failed: Mutex<Option<String>>,
}

impl CallLog {
    pub(crate) fn new(log: Arc<AuditLog>, call_id: u64, tool: &str, max_denials: u32) -> CallLog {
        CallLog {
            log,
            call_id,
            tool: tool.to_string(),
            max_denials,
            denials: Mutex::new(0),
            stopped: CancellationToken::new(),
            failed: Mutex::new(None),
        }
    }

    /// The host's audit log.
    pub(crate) fn log(&self) -> &AuditLog {
        &self.log
    }

    /// Denials so far.
    pub(crate) fn denials(&self) -> u32 {
        *self.denials.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cancelled once the call exceeded its denials.
    pub(crate) fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }

    /// Records one denial: a `warn` diagnostic and a `denied` record, plus
    /// a `suspicious` record when this one exceeds the maximum (which also
    /// stops the call). Returns whether the call must be stopped.
    ///
    /// # Errors
    ///
    /// [`Error::Audit`] if a record could not be written.
    pub(crate) async fn deny(&self, kind: &'static str, reason: &str) -> Result<bool, Error> {
        let count = {
            let mut denials = self.denials.lock().unwrap_or_else(PoisonError::into_inner);
            *denials += 1;
            *denials
        };
        let (call_id, tool) = (self.call_id, self.tool.as_str());
        tracing::warn!(call_id, tool, kind, reason, denials = count, "denied");
        let denied = self.log.send(AuditEvent::Denied {
            call_id,
            tool: tool.to_string(),
            kind,
            reason: reason.to_string(),
            denials: count,
        });
        if count <= self.max_denials {
            denied.written().await?;
            return Ok(false);
        }
        tracing::warn!(call_id, tool, denials = count, "call stopped as suspicious");
        // Queued before the stop is signalled: a `wasi:http` request runs on
        // a task of its own, and the call, seeing the stop, may end and write
        // `call_ended` before this task runs again.
        let suspicious = self.log.send(AuditEvent::Suspicious {
            call_id,
            tool: tool.to_string(),
            denials: count,
        });
        self.stopped.cancel();
        denied.written().await?;
        suspicious.written().await?;
        Ok(true)
    }

    /// The first record the gate failed to write, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fail(&self, error: &Error) {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if failed.is_none() {
            *failed = Some(match error {
                Error::Audit(reason) => reason.clone(),
                other => other.to_string(),
            });
        }
    }

    /// Queues the record of a request that never reached the network; it
    /// is written before the call's end record, which the call waits for.
    fn record_refused(&self, record: &EgressRecord) {
        self.log
            .record_detached(record.event(self.call_id, &self.tool));
    }
}

impl CallEgress {
    fn tally(&self) -> MutexGuard<'_, Tally> {
        // Nothing panics while holding it; a poisoned tally is still right.
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cancelled once the call exceeded its denials; the number of denials.
    pub(crate) fn stopped(&self) -> (&CancellationToken, u32) {
        (self.log.stopped(), self.log.denials())
    }

    /// Counts one more request of this call, before anything of it is read
    /// into host memory, and refuses (and records) it when the call has
    /// made as many as it may.
    pub(crate) fn reserve(&self, method: &str, url: &str) -> Result<Reservation, EgressError> {
        if self.in_flight.is_closed() {
            return Err(EgressError::TooManyRequests("the call is over".into()));
        }
        let mut tally = self.tally();
        tally.requests += 1;
        if tally.requests > self.grants.limits.http_requests {
            let why = format!(
                "this call already made {} requests; the limit is {}",
                self.grants.limits.http_requests, self.grants.limits.http_requests
            );
            drop(tally);
            self.log
                .record_refused(&refused_record(method, url, why.clone(), None));
            return Err(EgressError::TooManyRequests(why));
        }
        Ok(Reservation(()))
    }

    /// Records a counted request that never reached the gate's checks (its
    /// headers or body could not be read).
    pub(crate) fn refuse(&self, _counted: Reservation, method: &str, url: &str, why: &str) {
        self.log
            .record_refused(&refused_record(method, url, why.to_string(), None));
    }

    /// A slot for a request about to go through the gate's checks.
    pub(super) fn open_slot(&self, method: &str) -> usize {
        let mut tally = self.tally();
        tally.methods.push(method.to_string());
        tally.methods.len() - 1
    }

    /// Writes the `egress_sent` record of the request in `slot` and waits
    /// until it is written: called just before bytes may leave, so the log
    /// shows the checked destination and the secret even if the call ends
    /// (or is dropped) before the response.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] when the record cannot be written: the request does
    /// not leave, and the call fails with the audit error.
    pub(super) async fn mark_allowed(
        &self,
        slot: usize,
        destination: &str,
        secret: &Option<String>,
    ) -> Result<(), Refusal> {
        let method = self.tally().methods.get(slot).cloned().unwrap_or_default();
        let sent = self.log.log().send(AuditEvent::EgressSent {
            call_id: self.log.call_id,
            tool: self.log.tool.clone(),
            request: u32::try_from(slot + 1).unwrap_or(u32::MAX),
            method,
            destination: destination.to_string(),
            secret: secret.clone(),
        });
        sent.written().await.map_err(|e| {
            self.log.fail(&e);
            Refusal::Failed(EgressError::Upstream(
                "the request could not be recorded, so it was not sent".into(),
            ))
        })
    }

    /// Writes the `egress` record of the request in `slot` with its
    /// outcome and counts a denial; waits until both are written, so the
    /// plugin sees the response only once it is on the record.
    ///
    /// # Errors
    ///
    /// [`Suspicious`] when this denial exceeds the call's maximum (the
    /// call is stopped).
    pub(super) async fn close_slot(
        &self,
        slot: usize,
        method: String,
        destination: String,
        secret: Option<String>,
        result: &Result<GuestResponse, EgressError>,
    ) -> Result<(), Suspicious> {
        let (status, bytes) = match result {
            Ok(response) => (Some(response.status), Some(response.body.len() as u64)),
            Err(_) => (None, None),
        };
        let reason = result.as_ref().err().map(|e| e.message().to_string());
        let denied = matches!(result, Err(EgressError::Denied(_)));
        // An invalid request never left the host either: recorded as
        // refused, so the log shows every attempt.
        let refused = denied || matches!(result, Err(EgressError::InvalidRequest(_)));
        let record = EgressRecord {
            request: u32::try_from(slot + 1).unwrap_or(u32::MAX),
            method,
            destination,
            status,
            bytes,
            allowed: !refused,
            reason,
            secret,
        };
        let log = &self.log;
        if let Err(e) = log.log().record(record.event(log.call_id, &log.tool)).await {
            log.fail(&e);
        }
        if let (true, Some(reason)) = (denied, &record.reason) {
            match log.deny("egress", reason).await {
                Ok(false) => {}
                Ok(true) => return Err(Suspicious(log.denials())),
                Err(e) => log.fail(&e),
            }
        }
        Ok(())
    }
}

/// One call's [`CallLog`], shared by the host and the call's gate.
pub(crate) type SharedCallLog = Arc<CallLog>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn denials_past_the_maximum_mark_the_call_suspicious() {
        let log = CallLog::new(Arc::new(AuditLog::new(None).expect("log")), 1, "a.b", 1);
        assert!(!log.deny("approval", "no").await.expect("ok"));
        assert!(!log.stopped().is_cancelled());
        assert!(log.deny("egress", "no").await.expect("ok"));
        assert_eq!(log.denials(), 2);
        assert!(log.stopped().is_cancelled(), "the gate sees the stop");
    }
}
