//! The egress gate: every outbound request of a plugin passes here, from
//! both HTTP interfaces (`portcullis:tool/http` and `wasi:http`). Each step
//! can refuse the request with a reason the plugin sees, and they run in
//! this order ([`gate`] holds one function per step; the names are theirs):
//!
//! 0. counted (`reserve`, [`tally`]): against the call's `http_requests`,
//!    before anything of the request is read into host memory; then it
//!    waits for the one slot in flight;
//! 1. `check_sizes`: the request body, header count and header bytes
//!    against their limits;
//! 2. `check_headers`: `Host`, hop-by-hop and framing headers are the
//!    host's, so a plugin cannot front one domain through another, and a
//!    header a granted secret is injected into is never the plugin's;
//! 3. `check_method`: a valid method, upper-cased;
//! 4. `named_secret` ([`attach`]): a request may name one secret, which
//!    must be granted to the plugin;
//! 5. `parse`: the URL is parsed once (WHATWG rules: case, trailing dot,
//!    IDN and IP literal spellings normalised) and that parsed form is what
//!    is checked and what is used to connect;
//! 6. `check_allowlist` (`policy::allowlist`): scheme, host, port, path,
//!    method;
//! 7. `bounds`: the request's deadline and connect timeout; the guest's
//!    only shorten the host's, and none outlives the call;
//! 8. `resolve`: the host resolves the name itself ([`Resolver`]);
//! 9. `check_addresses`: refused when any address is in a special-purpose
//!    range ([`address`]), unless the entry opts in with `allow_private`;
//! 10. `chosen_secret` and `attach` ([`attach`]): the named secret, or for
//!     `wasi:http` (whose requests cannot name one) the first granted
//!     secret bound to the destination; only if it is bound to this
//!     destination, method and path does the host fetch its value for this
//!     call and attach it (header or query). The plugin never sees it;
//! 11. `connect` ([`client`]): an `egress_sent` record (method, checked
//!     destination, secret name) is written to the audit sink and
//!     acknowledged, then the connection goes to exactly the checked address, with TLS verifying
//!     the original name (or on a connection of this call kept alive to
//!     that same checked address and name); the response is capped while
//!     it streams, the whole exchange ends by the request's deadline, and
//!     what comes back is scrubbed of every secret value before the plugin
//!     sees it.
//!
//! Redirects are never followed: a 3xx goes back to the plugin, whose next
//! request is checked like any other. Each attempt, allowed or not, ends as
//! an `egress` record ([`EgressRecord`]) written before the plugin sees the
//! outcome; denials also count towards the call's one denial budget
//! ([`CallLog`], shared with the approval gate), and the one past
//! `max_denials` stops the call ([`Suspicious`]).
//!
//! Files: [`request`] (what crosses the gate), [`tally`] (counting, the
//! records, the denial budget), [`gate`] (the steps), [`attach`] (the secret steps),
//! [`address`], [`resolve`] and [`client`] (the network side); this file
//! holds the per-call state tying them together.

pub(crate) mod address;
mod attach;
mod client;
mod fixture;
mod gate;
mod request;
mod resolve;
mod tally;

pub(crate) use client::Tls;
pub use fixture::{DEFAULT_FIXTURE_ADDRESS, Fixture, Fixtures, Received, Recorded};
pub(crate) use request::{EgressError, GuestRequest, GuestResponse, GuestTimeouts, SecretChoice};
pub use resolve::{ResolveFuture, Resolver, SystemResolver};
pub(crate) use tally::{CallLog, Reservation, SharedCallLog, Suspicious};

use crate::policy::allowlist::HttpRule;
use crate::policy::{Limits, caps};
use crate::secrets::{Scrubber, SecretPolicy};
use std::sync::{Arc, Mutex, PoisonError};
use tally::Tally;
use tokio::time::Instant;

/// A plugin's egress, prepared once when it loads and shared by its calls:
/// its name, allowlist, granted secrets and limits, with the host's network
/// and scrubber. Plugins without HTTP grants have none.
#[derive(Clone)]
pub(crate) struct PluginEgress {
    pub(crate) plugin: Arc<str>,
    /// Its allowlist.
    pub(crate) http: Arc<[HttpRule]>,
    /// The secrets granted to it.
    pub(crate) secrets: Arc<[SecretPolicy]>,
    pub(crate) limits: Limits,
    pub(crate) network: Network,
    /// Every secret value known at load, for scrubbing responses.
    pub(crate) scrubber: Arc<Scrubber>,
}

impl PluginEgress {
    /// The gate of one call, handed to the sandbox ready to use:
    /// `call_deadline` is the call's own deadline (no request may outlive
    /// it), `log` the call's audit trail and denial budget.
    pub(crate) fn call(
        &self,
        call_deadline: Instant,
        log: SharedCallLog,
        call: CallFacts,
    ) -> CallEgress {
        CallEgress {
            scrubber: Mutex::new(Arc::clone(&self.scrubber)),
            grants: self.clone(),
            call,
            call_deadline,
            log,
            tally: Mutex::new(Tally::default()),
            in_flight: tokio::sync::Semaphore::new(caps::HTTP_IN_FLIGHT),
            pool: client::Pool::default(),
        }
    }
}

/// Who is calling and what with (secret sources are asked per call, with
/// these facts).
pub(crate) struct CallFacts {
    pub(crate) tool: String,
    pub(crate) call_id: u64,
    pub(crate) caller: Option<String>,
}

/// How the host reaches the network: its resolver and whom it trusts for
/// HTTPS. Shared by every call.
#[derive(Clone)]
pub(crate) struct Network {
    pub(crate) resolver: Arc<dyn Resolver>,
    pub(crate) tls: Tls,
    /// Tests only: the send is served from these, never the network.
    pub(crate) fixtures: Option<Arc<fixture::Fixtures>>,
}

/// The egress state of one call, shared by both HTTP interfaces (a
/// `wasi:http` request runs in its own task, so this is used through
/// `&self`).
pub(crate) struct CallEgress {
    grants: PluginEgress,
    call: CallFacts,
    /// Every value known at load plus any value a source gave out for this
    /// call: what responses, and finally the call's results, are scrubbed
    /// with.
    scrubber: Mutex<Arc<Scrubber>>,
    /// The call's own deadline: no request may outlive it.
    call_deadline: Instant,
    /// The call's audit trail and its one denial budget.
    log: SharedCallLog,
    tally: Mutex<Tally>,
    /// One request in flight at a time ([`caps::HTTP_IN_FLIGHT`]).
    in_flight: tokio::sync::Semaphore,
    /// The call's kept-alive connections, by checked destination.
    pool: client::Pool,
}

impl CallEgress {
    /// The granted secret injected into request header `lower`, if any: a
    /// header the plugin may not set.
    pub(crate) fn injected_into(&self, lower: &str) -> Option<&str> {
        self.grants
            .secrets
            .iter()
            .find(|p| p.inject.header().as_deref() == Some(lower))
            .map(|p| p.name.as_str())
    }

    /// The biggest request body allowed.
    pub(crate) fn request_body_limit(&self) -> u64 {
        self.grants.limits.http_request_body
    }

    /// The call's deadline: nothing of a request may outlive it.
    pub(crate) fn deadline(&self) -> Instant {
        self.call_deadline
    }

    /// The scrubber for this call: the host's, grown by any secret value
    /// fetched for this call that the host did not know at load.
    pub(crate) fn scrubber(&self) -> Arc<Scrubber> {
        Arc::clone(&self.scrubber.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Teaches the call's scrubber a secret value fetched for it.
    fn learn(&self, name: &str, value: &crate::secrets::Secret) {
        let mut current = self.scrubber.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(grown) = current.with_value(name, value) {
            *current = Arc::new(grown);
        }
    }

    /// Ends the call's egress: nothing more starts, and kept-alive
    /// connections close. Requests already under way end with the store,
    /// which aborts their tasks.
    pub(crate) fn close(&self) {
        self.in_flight.close();
        self.pool.clear();
    }

    /// Counts, checks and, if allowed, sends one request.
    ///
    /// # Errors
    ///
    /// [`Suspicious`] when this denial exceeds the call's maximum: the
    /// caller traps.
    pub(crate) async fn send(
        &self,
        request: GuestRequest,
    ) -> Result<Result<GuestResponse, EgressError>, Suspicious> {
        match self.reserve(&request.method, &request.url) {
            Ok(counted) => self.send_counted(counted, request).await,
            Err(e) => Ok(Err(e)),
        }
    }

    /// Checks and, if allowed, sends a request [`reserve`](Self::reserve)
    /// counted.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub(crate) async fn send_counted(
        &self,
        _counted: Reservation,
        request: GuestRequest,
    ) -> Result<Result<GuestResponse, EgressError>, Suspicious> {
        let method = request.method.clone();
        let mut secret = match &request.secret {
            SecretChoice::Named(name) => Some(name.clone()),
            SecretChoice::None | SecretChoice::ByDestination => None,
        };
        // Fails once the call is over; waiting for the permit ends with it.
        let Ok(_permit) = self.in_flight.acquire().await else {
            return Ok(Err(EgressError::TooManyRequests("the call is over".into())));
        };
        if self.log.stopped().is_cancelled() {
            return Ok(Err(EgressError::TooManyRequests(
                "the call was stopped after too many denials".into(),
            )));
        }
        let slot = self.open_slot(&method);
        let (destination, result) = self.attempt(request, slot, &mut secret).await;
        self.close_slot(slot, method, destination, secret, &result)
            .await?;
        Ok(result)
    }
}
