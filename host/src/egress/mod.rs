//! The egress gate: every outbound request of a plugin passes here, in this
//! order, and any step can refuse it with a reason the plugin sees:
//!
//! 1. per-call limits: requests per call, request body and header sizes;
//! 2. headers: `Host`, hop-by-hop and framing headers are the host's, so a
//!    plugin cannot front one domain through another;
//! 3. secrets: a request may name one secret granted to the plugin; after
//!    every check below passed, and only if the secret is bound to this
//!    destination, method and path, the host fetches its value for this
//!    call and attaches it (header or query) — the plugin never sees it,
//!    cannot set the injected header itself, and the response it gets back
//!    is scrubbed of every secret value;
//! 4. the URL is parsed once (WHATWG rules: case, trailing dot, IDN and IP
//!    literal spellings normalised) and that parsed form is what is
//!    checked and what is used to connect;
//! 5. the allowlist (`policy::allowlist`): scheme, host, port, path, method;
//! 6. the host resolves the name itself ([`Resolver`]) and refuses when any
//!    address is in a special-purpose range ([`address`]), unless the
//!    entry opts in with `allow_private`;
//! 7. the connection goes to exactly the checked address, with TLS
//!    verifying the original name; the response is capped while it
//!    streams, and the whole exchange ends by the request's deadline, which
//!    never outlives the call's.
//!
//! Redirects are never followed: a 3xx goes back to the plugin, whose next
//! request is checked like any other. Each attempt, allowed or not, is kept
//! as an [`EgressRecord`] for the audit log; denials also count towards the
//! call's `max_denials`.

pub(crate) mod address;
mod client;
mod request;
mod resolve;
mod tally;

pub(crate) use client::Tls;
pub(crate) use request::{
    EgressError, EgressRecord, GuestRequest, GuestResponse, GuestTimeouts, SecretChoice,
};
pub use resolve::{ResolveFuture, Resolver, SystemResolver};
pub(crate) use tally::{Reservation, Suspicious};

use crate::policy::allowlist::{self, HttpRule};
use crate::policy::{Limits, caps};
use crate::secrets::{Injection, Scrubber, SecretPolicy, SecretRequest};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use tally::Tally;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Why a secret was not attached.
enum Refusal {
    /// The request is not the secret's to make (counts as a denial).
    Denied(String),
    /// The secret could not be had (its source failed): nothing was sent.
    Unavailable(String),
}

/// What a plugin may reach and attach: worked out once when it loads,
/// shared by its calls.
#[derive(Clone)]
pub(crate) struct PluginGrants {
    /// Its allowlist.
    pub(crate) http: Arc<[HttpRule]>,
    /// The secrets granted to it.
    pub(crate) secrets: Arc<[SecretPolicy]>,
}

/// Who is calling and what with (secret sources are asked per call, with
/// these facts).
pub(crate) struct CallFacts {
    pub(crate) grants: PluginGrants,
    /// Every secret value known at load, for scrubbing responses.
    pub(crate) scrubber: Arc<Scrubber>,
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
}

/// The egress state of one call, shared by both HTTP interfaces (a
/// `wasi:http` request runs in its own task, so this is used through
/// `&self`).
pub(crate) struct CallEgress {
    call: CallFacts,
    /// Every value known at load plus any value a source gave out for this
    /// call: what responses, and finally the call's results, are scrubbed
    /// with.
    scrubber: Mutex<Arc<Scrubber>>,
    plugin: Arc<str>,
    limits: Limits,
    network: Network,
    /// The call's own deadline: no request may outlive it.
    call_deadline: Instant,
    max_denials: u32,
    tally: Mutex<Tally>,
    /// One request in flight at a time ([`caps::HTTP_IN_FLIGHT`]).
    in_flight: tokio::sync::Semaphore,
    /// Cancelled when the call piles up more denials than allowed.
    stopped: CancellationToken,
}

impl CallEgress {
    pub(crate) fn new(
        plugin: Arc<str>,
        limits: Limits,
        network: Network,
        call_deadline: Instant,
        max_denials: u32,
        call: CallFacts,
    ) -> CallEgress {
        CallEgress {
            scrubber: Mutex::new(Arc::clone(&call.scrubber)),
            call,
            plugin,
            limits,
            network,
            call_deadline,
            max_denials,
            tally: Mutex::new(Tally::default()),
            in_flight: tokio::sync::Semaphore::new(caps::HTTP_IN_FLIGHT),
            stopped: CancellationToken::new(),
        }
    }

    /// The granted secret injected into request header `lower`, if any: a
    /// header the plugin may not set.
    pub(crate) fn injected_into(&self, lower: &str) -> Option<&str> {
        self.call
            .grants
            .secrets
            .iter()
            .find(|p| p.inject.header().as_deref() == Some(lower))
            .map(|p| p.name.as_str())
    }

    /// The biggest request body allowed.
    pub(crate) fn request_body_limit(&self) -> u64 {
        self.limits.http_request_body
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

    fn learn(&self, name: &str, value: &crate::secrets::Secret) {
        let mut current = self.scrubber.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(grown) = current.with_value(name, value) {
            *current = Arc::new(grown);
        }
    }

    /// Ends the call's egress: nothing more starts. Requests already under
    /// way end with the store, which aborts their tasks.
    pub(crate) fn close(&self) {
        self.in_flight.close();
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
        if self.stopped.is_cancelled() {
            return Ok(Err(EgressError::TooManyRequests(
                "the call was stopped after too many denials".into(),
            )));
        }
        let slot = self.open_record(&method, &request.url, secret.clone());
        let (destination, result) = self.attempt(request, slot, &mut secret).await;
        self.close_record(slot, method, destination, secret, &result)?;
        Ok(result)
    }

    /// The destination as checked, and the outcome. `secret` is set to
    /// the secret a by-destination request got.
    async fn attempt(
        &self,
        request: GuestRequest,
        slot: usize,
        secret_used: &mut Option<String>,
    ) -> (String, Result<GuestResponse, EgressError>) {
        let raw_destination = crate::util::cut(&request.url, 256).0.to_string();
        let invalid = |why: String| {
            (
                raw_destination.clone(),
                Err(EgressError::InvalidRequest(why)),
            )
        };
        let body = request.body.unwrap_or_default();
        if body.len() as u64 > self.limits.http_request_body {
            return invalid(format!(
                "the request body is over the limit of {} bytes",
                self.limits.http_request_body
            ));
        }
        if request.headers.len() > caps::HTTP_HEADERS {
            return invalid(format!(
                "the request has {} headers; the limit is {}",
                request.headers.len(),
                caps::HTTP_HEADERS
            ));
        }
        let header_bytes: usize = request.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        if header_bytes > caps::HTTP_HEADER_BYTES {
            return invalid(format!(
                "the request headers are {header_bytes} bytes; the limit is {} bytes",
                caps::HTTP_HEADER_BYTES
            ));
        }
        let mut headers = Vec::with_capacity(request.headers.len());
        for (name, value) in &request.headers {
            let lower = name.to_ascii_lowercase();
            if allowlist::host_header(&lower) {
                return self.deny(
                    raw_destination,
                    format!("header `{lower}` is set by the host and cannot be set by the plugin"),
                    None,
                );
            }
            // Whether or not this request gets the secret: a plugin never
            // writes where its credentials go.
            if let Some(secret) = self.injected_into(&lower) {
                return self.deny(
                    raw_destination,
                    format!(
                        "header `{lower}` carries secret `{secret}` and is set by the host, not the plugin"
                    ),
                    None,
                );
            }
            let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(lower.as_bytes()),
                http::HeaderValue::from_str(value),
            ) else {
                return invalid(format!("header `{}` is not valid", name.escape_debug()));
            };
            headers.push((name, value));
        }
        let method = request.method.to_ascii_uppercase();
        if !allowlist::valid_method(&method) {
            return invalid(format!(
                "method `{}` is not valid",
                request.method.escape_debug()
            ));
        }
        let named = match &request.secret {
            SecretChoice::None | SecretChoice::ByDestination => None,
            SecretChoice::Named(name) => {
                match self.call.grants.secrets.iter().find(|p| &p.name == name) {
                    Some(policy) => Some(policy.clone()),
                    None => {
                        return self.deny(
                            raw_destination,
                            format!(
                                "no secret named `{}` is granted to this plugin",
                                name.escape_debug()
                            ),
                            None,
                        );
                    }
                }
            }
        };

        // Parsed once: everything below uses `url` and `target`.
        let url = match Url::parse(&request.url) {
            Ok(url) => url,
            Err(e) => {
                return invalid(format!(
                    "`{}` is not a URL: {e}",
                    raw_destination.escape_debug()
                ));
            }
        };
        let target = match allowlist::Target::from_url(&url) {
            Ok(target) => target,
            Err(why) => return self.deny(raw_destination, why, None),
        };
        let destination = format!("{}{}", target.origin(), target.path);
        let Some(rule) = self
            .call
            .grants
            .http
            .iter()
            .find(|r| r.allows(&method, &target))
        else {
            let (why, line) = allowlist::explain(&self.call.grants.http, &method, &target);
            return self.deny(destination, why, Some(line));
        };
        let allow_private = rule.allow_private();

        // The guest's timeouts only ever shorten ours.
        let now = Instant::now();
        let mut deadline = self.call_deadline.min(now + self.limits.http_timeout);
        if let Some(first_byte) = request.timeouts.first_byte {
            deadline = deadline.min(now + first_byte);
        }
        let connect_timeout = request
            .timeouts
            .connect
            .map_or(self.limits.http_connect_timeout, |guest| {
                guest.min(self.limits.http_connect_timeout)
            });
        let ips: Vec<IpAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            _ => {
                let lookup = self.network.resolver.resolve(&target.host, target.port);
                match tokio::time::timeout_at(deadline, lookup).await {
                    Err(_) => {
                        return (
                            destination,
                            Err(EgressError::Timeout(format!(
                                "resolving `{}` took too long",
                                target.host
                            ))),
                        );
                    }
                    Ok(Err(e)) => {
                        return (
                            destination,
                            Err(EgressError::Upstream(format!(
                                "cannot resolve `{}`: {e}",
                                target.host
                            ))),
                        );
                    }
                    Ok(Ok(ips)) => ips,
                }
            }
        };
        let Some(&first) = ips.first() else {
            return (
                destination,
                Err(EgressError::Upstream(format!(
                    "`{}` has no addresses",
                    target.host
                ))),
            );
        };
        if !allow_private {
            // Any blocked address refuses the name: a resolver answering
            // with a mix must not get a chance to pick the private one.
            if let Some((ip, range)) = ips
                .iter()
                .find_map(|ip| address::blocked(*ip).map(|r| (ip, r)))
            {
                let why = if url
                    .host()
                    .is_some_and(|h| matches!(h, url::Host::Domain(_)))
                {
                    format!(
                        "`{}` resolves to {ip}, in a blocked range: {range}",
                        target.host
                    )
                } else {
                    format!("address {ip} is in a blocked range: {range}")
                };
                return self.deny(
                    destination,
                    why,
                    Some(
                        "allow_private = true on the entry (only for local services you trust)"
                            .into(),
                    ),
                );
            }
        }

        let mut path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut headers = headers;
        let secret = match request.secret {
            SecretChoice::ByDestination => self
                .call
                .grants
                .secrets
                .iter()
                .find(|p| p.allows(&method, &target))
                .cloned(),
            SecretChoice::Named(_) | SecretChoice::None => named,
        };
        if let Some(policy) = &secret {
            *secret_used = Some(policy.name.clone());
        }
        if let Some(policy) = &secret {
            let attached = self
                .attach(
                    policy,
                    &method,
                    &target,
                    deadline,
                    &mut headers,
                    &mut path_and_query,
                )
                .await;
            match attached {
                Ok(()) => {}
                Err(Refusal::Denied(why)) => return self.deny(destination, why, None),
                // The source's failure, not the plugin's: not a denial.
                Err(Refusal::Unavailable(why)) => {
                    return (destination, Err(EgressError::Upstream(why)));
                }
            }
        }
        let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
            return invalid(format!("method `{method}` is not valid"));
        };
        // From here on bytes may leave.
        self.mark_allowed(slot, &destination, secret_used);
        let outgoing = client::Outgoing {
            method,
            target: &target,
            path_and_query,
            addr: SocketAddr::new(first, target.port),
            headers,
            body,
        };
        let bounds = client::Bounds {
            connect_timeout,
            deadline,
            max_response: self.limits.http_response,
        };
        let result = client::send(outgoing, bounds, &self.network.tls)
            .await
            .map(|incoming| {
                // Whatever comes back (an echo, an error page) loses every
                // secret value, including one fetched for this call, before
                // the plugin sees it.
                let scrubber = self.scrubber();
                GuestResponse {
                    status: incoming.status,
                    headers: incoming
                        .headers
                        .into_iter()
                        .map(|(k, v)| {
                            (
                                scrubber.scrub_str(&k).into_owned(),
                                scrubber.scrub_str(&v).into_owned(),
                            )
                        })
                        .collect(),
                    body: scrubber.scrub_bytes(&incoming.body).into_owned(),
                }
            })
            .map_err(|e| match e {
                client::ClientError::Timeout(m) => EgressError::Timeout(m),
                client::ClientError::TooLarge(m) => EgressError::TooLarge(m),
                client::ClientError::Upstream(m) => EgressError::Upstream(m),
            });
        (destination, result)
    }

    /// Checks that `policy` is bound to this request, fetches its value for
    /// this call and attaches it.
    async fn attach(
        &self,
        policy: &SecretPolicy,
        method: &str,
        target: &allowlist::Target,
        deadline: Instant,
        headers: &mut Vec<(http::HeaderName, http::HeaderValue)>,
        path_and_query: &mut String,
    ) -> Result<(), Refusal> {
        let name = &policy.name;
        if !policy.allows(method, target) {
            return Err(Refusal::Denied(format!(
                "secret `{name}` is not bound to {method} {}{}",
                target.origin(),
                target.path
            )));
        }
        let request = SecretRequest::for_call(
            name.clone(),
            self.plugin.to_string(),
            self.call.tool.clone(),
            self.call.call_id,
            self.call.caller.clone(),
        );
        let value = match tokio::time::timeout_at(deadline, policy.source.fetch(&request)).await {
            Err(_) => {
                return Err(Refusal::Unavailable(format!(
                    "secret `{name}` is unavailable: its source did not answer in time"
                )));
            }
            Ok(Err(e)) => {
                return Err(Refusal::Unavailable(format!(
                    "secret `{name}` is unavailable: {e}"
                )));
            }
            Ok(Ok(value)) => value,
        };
        if value.len() < crate::secrets::MIN_SECRET_BYTES {
            return Err(Refusal::Unavailable(format!(
                "secret `{name}` is shorter than {} bytes, too short to scrub reliably",
                crate::secrets::MIN_SECRET_BYTES
            )));
        }
        // Known before anything is sent: an echo of a rotated value is
        // scrubbed like the value known at load.
        self.learn(name, &value);
        match policy.inject.inject(&value).map_err(Refusal::Unavailable)? {
            Injection::Header {
                name: header,
                value,
            } => {
                let lower = header.to_ascii_lowercase();
                let header = http::HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
                    Refusal::Unavailable(format!(
                        "secret `{name}`: header name `{lower}` is not valid"
                    ))
                })?;
                let mut value =
                    http::HeaderValue::from_str(value.expose_for_injection()).map_err(|_| {
                        Refusal::Unavailable(format!(
                            "secret `{name}`: the value cannot go in a header"
                        ))
                    })?;
                value.set_sensitive(true);
                headers.push((header, value));
            }
            injection @ Injection::Query { .. } => {
                let (path, query) = match path_and_query.split_once('?') {
                    Some((path, query)) => (path.to_string(), query.to_string()),
                    None => (path_and_query.clone(), String::new()),
                };
                if let Some(query) = injection.append_to_query(&query) {
                    *path_and_query = format!("{path}?{}", query.expose_for_injection());
                }
            }
        }
        Ok(())
    }

    fn deny(
        &self,
        destination: String,
        why: String,
        line: Option<String>,
    ) -> (String, Result<GuestResponse, EgressError>) {
        match &line {
            Some(line) => tracing::warn!(
                plugin = %self.plugin,
                destination = %destination,
                reason = %why,
                "egress denied; to allow it, add to [plugins.{}]: {line}",
                self.plugin
            ),
            None => {
                tracing::warn!(plugin = %self.plugin, destination = %destination, reason = %why, "egress denied")
            }
        }
        (destination, Err(EgressError::Denied(why)))
    }
}
