//! What one call's requests have done so far, kept in one place: how many
//! were made (against `http_requests`), one [`EgressRecord`] per attempt
//! for the audit log, and how many the policy refused (against
//! `max_denials`). The gate's steps never touch it; [`CallEgress::send`]
//! opens a record before the gate runs and closes it with the outcome.

use super::CallEgress;
use super::request::{EgressError, EgressRecord, GuestResponse, refused_record};
use std::sync::{MutexGuard, PoisonError};
use tokio_util::sync::CancellationToken;

/// What one call's requests have done so far.
#[derive(Default)]
pub(super) struct Tally {
    requests: u32,
    denials: u32,
    records: Vec<EgressRecord>,
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

impl CallEgress {
    fn tally(&self) -> MutexGuard<'_, Tally> {
        // Nothing panics while holding it; a poisoned tally is still right.
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every attempt so far, allowed or not, taken out (for the audit log
    /// at the call's end).
    pub(crate) fn take_records(&self) -> Vec<EgressRecord> {
        std::mem::take(&mut self.tally().records)
    }

    /// Cancelled once the call exceeded its denials; the number of denials.
    pub(crate) fn stopped(&self) -> (&CancellationToken, u32) {
        (&self.stopped, self.tally().denials)
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
            tally
                .records
                .push(refused_record(method, url, why.clone(), None));
            return Err(EgressError::TooManyRequests(why));
        }
        Ok(Reservation(()))
    }

    /// Records a counted request that never reached the gate's checks (its
    /// headers or body could not be read).
    pub(crate) fn refuse(&self, _counted: Reservation, method: &str, url: &str, why: &str) {
        self.tally()
            .records
            .push(refused_record(method, url, why.to_string(), None));
    }

    /// Records a request before anything of it can leave, and returns its
    /// slot: if the call ends while this request is under way (its
    /// deadline, a cancellation, a guest that returns without waiting for
    /// a `wasi:http` response), the audit log still shows the attempt.
    pub(super) fn open_record(&self, method: &str, url: &str, secret: Option<String>) -> usize {
        let mut tally = self.tally();
        tally.records.push(refused_record(
            method,
            url,
            "unfinished: the call ended before the gate decided".into(),
            secret,
        ));
        tally.records.len() - 1
    }

    /// Marks the record in `slot` as allowed, just before bytes may leave:
    /// it shows the checked destination and the secret even if the call
    /// ends first.
    pub(super) fn mark_allowed(&self, slot: usize, destination: &str, secret: &Option<String>) {
        let mut tally = self.tally();
        let record = &mut tally.records[slot];
        destination.clone_into(&mut record.destination);
        record.allowed = true;
        record.secret.clone_from(secret);
        record.reason = Some("unfinished: the call ended before the response did".into());
    }

    /// Writes the outcome into the record in `slot` and counts a denial.
    ///
    /// # Errors
    ///
    /// [`Suspicious`] when this denial exceeds the call's maximum (the
    /// call is stopped).
    pub(super) fn close_record(
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
        let mut tally = self.tally();
        tally.records[slot] = EgressRecord {
            method,
            destination,
            status,
            bytes,
            allowed: !refused,
            denied,
            reason,
            secret,
        };
        if denied {
            tally.denials += 1;
            if tally.denials > self.max_denials {
                self.stopped.cancel();
                return Err(Suspicious(tally.denials));
            }
        }
        Ok(())
    }
}
