//! The gate's checks, one function per step, in the order the module docs
//! of [`egress`](super) give. Each step either hands the next one what it
//! found (parsed headers, the URL, the addresses) or stops the request
//! with a [`Refusal`]; [`CallEgress::attempt`] runs them in order and turns
//! a refusal into what the plugin sees and the audit log records.

use super::CallEgress;
use super::address;
use super::client;
use super::request::{EgressError, GuestRequest, GuestResponse, GuestTimeouts, SecretChoice};
use crate::policy::allowlist::{self, Target};
use crate::policy::caps;
use crate::secrets::SecretPolicy;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// Why the gate stopped a request, from the step that stopped it.
pub(super) enum Refusal {
    /// The request is malformed: refused, recorded under the URL as sent,
    /// but not a denial.
    Invalid(String),
    /// The policy refuses it (counts towards `max_denials`); `line` is
    /// what the manifest would need to allow it, when there is such a line.
    Denied { why: String, line: Option<String> },
    /// It could not be done (a name that does not resolve, a secret whose
    /// source failed, the upstream): not the plugin's doing, not a denial.
    Failed(EgressError),
}

impl Refusal {
    pub(super) fn denied(why: String) -> Refusal {
        Refusal::Denied { why, line: None }
    }
}

/// A request whose shape, method and named secret passed, and whose URL
/// parsed: everything after this uses `url` and `target`.
struct Admitted {
    method: String,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    body: Vec<u8>,
    secret: SecretChoice,
    /// The secret the request named, granted to the plugin.
    named: Option<SecretPolicy>,
    timeouts: GuestTimeouts,
    url: Url,
    target: Target,
}

impl CallEgress {
    /// Runs the gate's steps on one request and, if all pass, sends it.
    /// Returns the destination as checked (or the URL as sent, cut short,
    /// when it was refused before that) and the outcome. `secret_used` is
    /// set to the secret the request gets, once it is chosen.
    pub(super) async fn attempt(
        &self,
        request: GuestRequest,
        slot: usize,
        secret_used: &mut Option<String>,
    ) -> (String, Result<GuestResponse, EgressError>) {
        let raw_destination = crate::text::cut(&request.url, 256).0.to_string();
        let admitted = match self.admit(request, &raw_destination) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                return self.refused(&raw_destination, raw_destination.clone(), refusal);
            }
        };
        let destination = format!("{}{}", admitted.target.origin(), admitted.target.path);
        match self
            .forward(admitted, &destination, slot, secret_used)
            .await
        {
            Ok(response) => (destination, Ok(response)),
            Err(refusal) => self.refused(&raw_destination, destination, refusal),
        }
    }

    /// Steps 1 to 5, before the destination is known: limits, headers,
    /// method, the named secret, the URL.
    fn admit(&self, request: GuestRequest, raw_destination: &str) -> Result<Admitted, Refusal> {
        let body = request.body.unwrap_or_default();
        self.check_sizes(&body, &request.headers)?;
        self.check_no_secret_values(&request.url, &request.headers, &body)?;
        let headers = self.check_headers(&request.headers)?;
        let method = check_method(&request.method)?;
        let named = self.named_secret(&request.secret)?;
        let (url, target) = parse(&request.url, raw_destination)?;
        Ok(Admitted {
            method,
            headers,
            body,
            secret: request.secret,
            named,
            timeouts: request.timeouts,
            url,
            target,
        })
    }

    /// Steps 6 to 11, on the checked destination: allowlist, deadlines,
    /// resolve, address check, secret, connect.
    async fn forward(
        &self,
        admitted: Admitted,
        destination: &str,
        slot: usize,
        secret_used: &mut Option<String>,
    ) -> Result<GuestResponse, Refusal> {
        let Admitted {
            method,
            mut headers,
            body,
            secret,
            named,
            timeouts,
            url,
            target,
        } = admitted;
        let allow_private = self.check_allowlist(&method, &target)?;
        let (deadline, connect_timeout) = self.bounds(timeouts);
        let ips = self.resolve(&url, &target, deadline).await?;
        let checked = check_addresses(&ips, &target, allow_private)?;
        let mut path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        if let Some(policy) = self.chosen_secret(secret, named, &method, &target) {
            *secret_used = Some(policy.name.clone());
            // A request that carries a secret reads the whole response: a
            // reflected token fetched in slices would pass the scrubber.
            headers
                .retain(|(name, _)| name != http::header::RANGE && name != http::header::IF_RANGE);
            self.attach(
                &policy,
                &method,
                &target,
                deadline,
                &mut headers,
                &mut path_and_query,
            )
            .await?;
        }
        let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
            return Err(Refusal::Invalid(format!("method `{method}` is not valid")));
        };
        // From here on bytes may leave.
        self.mark_allowed(slot, destination, secret_used).await?;
        let outgoing = client::Outgoing {
            method,
            target: &target,
            path_and_query,
            addrs: checked
                .into_iter()
                .map(|ip| SocketAddr::new(ip, target.port))
                .collect(),
            headers,
            body,
        };
        let bounds = client::Bounds {
            connect_timeout,
            deadline,
            max_response: self.grants.limits.http_response,
        };
        let carried_secret = secret_used.is_some();
        self.connect(outgoing, bounds, carried_secret).await
    }

    /// Step 1: the per-call limits on the request's size.
    fn check_sizes(&self, body: &[u8], headers: &[(String, String)]) -> Result<(), Refusal> {
        if body.len() as u64 > self.grants.limits.http_request_body {
            return Err(Refusal::Invalid(format!(
                "the request body is over the limit of {} bytes",
                self.grants.limits.http_request_body
            )));
        }
        let header_bytes: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        if let Some(why) = caps::header_excess(headers.len(), header_bytes) {
            return Err(Refusal::Invalid(why));
        }
        Ok(())
    }

    /// Step 1b: nothing the plugin sends carries a known secret value, in
    /// any form the scrubber knows: a value a model pasted into arguments
    /// or a plugin learned goes nowhere, not even to its bound
    /// destination. The host's own injection comes later and is not
    /// scanned.
    fn check_no_secret_values(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), Refusal> {
        let scrubber = self.scrubber();
        let found = |part: &str, secret: &str| {
            Err(Refusal::denied(format!(
                "the request's {part} carries the value of secret `{secret}`; secrets are attached by the host, never sent by a plugin"
            )))
        };
        if let Some(secret) = scrubber.find(url.as_bytes()) {
            return found("URL", secret);
        }
        for (name, value) in headers {
            if let Some(secret) = scrubber
                .find(name.as_bytes())
                .or_else(|| scrubber.find(value.as_bytes()))
            {
                return found("headers", secret);
            }
        }
        if let Some(secret) = scrubber.find(body) {
            return found("body", secret);
        }
        Ok(())
    }

    /// Step 2: the plugin's headers, refused when they are the host's
    /// (`Host`, hop-by-hop, framing) or where a granted secret goes, and
    /// parsed.
    fn check_headers(
        &self,
        raw: &[(String, String)],
    ) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, Refusal> {
        let mut headers = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            let lower = name.to_ascii_lowercase();
            if allowlist::host_header(&lower) {
                return Err(Refusal::denied(format!(
                    "header `{lower}` is set by the host and cannot be set by the plugin"
                )));
            }
            // Whether or not this request gets the secret: a plugin never
            // writes where its credentials go.
            if let Some(secret) = self.injected_into(&lower) {
                return Err(Refusal::denied(format!(
                    "header `{lower}` carries secret `{secret}` and is set by the host, not the plugin"
                )));
            }
            let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(lower.as_bytes()),
                http::HeaderValue::from_str(value),
            ) else {
                return Err(Refusal::Invalid(format!(
                    "header `{}` is not valid",
                    name.escape_debug()
                )));
            };
            headers.push((name, value));
        }
        Ok(headers)
    }

    /// Step 6: the allowlist. Returns whether the entry that allows the
    /// request lets it reach special-purpose addresses.
    fn check_allowlist(&self, method: &str, target: &Target) -> Result<bool, Refusal> {
        let rules = &self.grants.http;
        match rules.iter().find(|r| r.allows(method, target)) {
            Some(rule) => Ok(rule.allow_private()),
            None if let Some(rule) = rules.iter().find(|r| r.refuses_spelling(target)) => {
                Err(Refusal::denied(format!(
                    "path `{}` has `;`, `%25` or an encoded `.`, `/` or `\\`, which servers may read differently from the path rule `{}`",
                    target.path,
                    rule.pattern()
                )))
            }
            None => {
                let (why, line) = allowlist::explain(rules, method, target);
                Err(Refusal::Denied {
                    why,
                    line: Some(line),
                })
            }
        }
    }

    /// Step 7: the request's deadline and connect timeout. The guest's
    /// timeouts only ever shorten ours, and nothing outlives the call.
    fn bounds(&self, timeouts: GuestTimeouts) -> (Instant, Duration) {
        let now = Instant::now();
        let mut deadline = self
            .call_deadline
            .min(now + self.grants.limits.http_timeout);
        if let Some(first_byte) = timeouts.first_byte {
            deadline = deadline.min(now + first_byte);
        }
        let connect_timeout = timeouts
            .connect
            .map_or(self.grants.limits.http_connect_timeout, |guest| {
                guest.min(self.grants.limits.http_connect_timeout)
            });
        (deadline, connect_timeout)
    }

    /// Step 8: the addresses to check and connect to. The host resolves
    /// the name itself, by `deadline`; an IP literal is its own address.
    async fn resolve(
        &self,
        url: &Url,
        target: &Target,
        deadline: Instant,
    ) -> Result<Vec<IpAddr>, Refusal> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => Ok(vec![IpAddr::V4(ip)]),
            Some(url::Host::Ipv6(ip)) => Ok(vec![IpAddr::V6(ip)]),
            _ => {
                let lookup = self
                    .grants
                    .network
                    .resolver
                    .resolve(&target.host, target.port);
                match tokio::time::timeout_at(deadline, lookup).await {
                    Err(_) => Err(Refusal::Failed(EgressError::Timeout(format!(
                        "resolving `{}` took too long",
                        target.host
                    )))),
                    Ok(Err(e)) => Err(Refusal::Failed(EgressError::Upstream(format!(
                        "cannot resolve `{}`: {e}",
                        target.host
                    )))),
                    Ok(Ok(ips)) => Ok(ips),
                }
            }
        }
    }

    /// Step 11: sends the checked request to the checked address and
    /// scrubs what comes back.
    async fn connect(
        &self,
        outgoing: client::Outgoing<'_>,
        bounds: client::Bounds,
        carried_secret: bool,
    ) -> Result<GuestResponse, Refusal> {
        let sent = match &self.grants.network.fixtures {
            // Tests only (`HostBuilder::http_fixtures`): served offline.
            Some(fixtures) => {
                let network = (&self.grants.network.tls, &self.pool);
                fixtures
                    .send(outgoing, bounds, network, &self.scrubber())
                    .await
            }
            None => client::send(outgoing, bounds, &self.grants.network.tls, &self.pool).await,
        };
        let incoming = sent.map_err(|e| {
            Refusal::Failed(match e {
                client::ClientError::Timeout(m) => EgressError::Timeout(m),
                client::ClientError::TooLarge(m) => EgressError::TooLarge(m),
                client::ClientError::Upstream(m) => EgressError::Upstream(m),
            })
        })?;
        // Whatever comes back (an echo, an error page) loses every secret
        // value, including one fetched for this call, before the plugin
        // sees it.
        let scrubber = self.scrubber();
        let headers = incoming
            .headers
            .into_iter()
            // A session cookie set in answer to a credential is a
            // credential too.
            .filter(|(k, _)| {
                !(carried_secret
                    && (k.eq_ignore_ascii_case("set-cookie")
                        || k.eq_ignore_ascii_case("set-cookie2")))
            })
            .map(|(k, v)| {
                (
                    scrubber.scrub_str(&k).into_owned(),
                    scrubber.scrub_str(&v).into_owned(),
                )
            })
            .collect();
        let body = client::off_the_runtime(incoming.body.len(), move || {
            let body = incoming.body;
            match scrubber.scrub_bytes(&body) {
                std::borrow::Cow::Borrowed(_) => body,
                std::borrow::Cow::Owned(clean) => clean,
            }
        })
        .await
        .map_err(|e| Refusal::Failed(EgressError::Upstream(e)))?;
        Ok(GuestResponse {
            status: incoming.status,
            headers,
            body,
        })
    }

    /// What the plugin sees of a refusal, under which destination it is
    /// recorded: an invalid request under the URL as sent (cut short), any
    /// other under `destination`. A denial is logged with the manifest
    /// line that would allow it.
    fn refused(
        &self,
        raw_destination: &str,
        destination: String,
        refusal: Refusal,
    ) -> (String, Result<GuestResponse, EgressError>) {
        match refusal {
            Refusal::Invalid(why) => (
                raw_destination.to_string(),
                Err(EgressError::InvalidRequest(why)),
            ),
            Refusal::Failed(e) => (destination, Err(e)),
            Refusal::Denied { why, line } => {
                match &line {
                    Some(line) => tracing::warn!(
                        plugin = %self.grants.plugin,
                        destination = %destination,
                        reason = %why,
                        "egress denied; to allow it, add to [plugins.{}]: {line}",
                        self.grants.plugin
                    ),
                    None => {
                        tracing::warn!(plugin = %self.grants.plugin, destination = %destination, reason = %why, "egress denied")
                    }
                }
                (destination, Err(EgressError::Denied(why)))
            }
        }
    }
}

/// Step 3: the method, upper-cased.
fn check_method(method: &str) -> Result<String, Refusal> {
    let upper = method.to_ascii_uppercase();
    if !allowlist::valid_method(&upper) {
        return Err(Refusal::Invalid(format!(
            "method `{}` is not valid",
            method.escape_debug()
        )));
    }
    Ok(upper)
}

/// Step 5: the URL, parsed once (WHATWG rules), and what the allowlist
/// checks of it.
fn parse(url: &str, raw_destination: &str) -> Result<(Url, Target), Refusal> {
    let url = Url::parse(url).map_err(|e| {
        Refusal::Invalid(format!(
            "`{}` is not a URL: {e}",
            raw_destination.escape_debug()
        ))
    })?;
    let target = Target::from_url(&url).map_err(Refusal::denied)?;
    Ok((url, target))
}

/// Step 9: the addresses to connect to, all of them checked first. Any
/// address in a blocked range refuses the name, unless the entry opts in
/// with `allow_private`: a resolver answering with a mix must not get a
/// chance to pick the private one. The plugin learns the range, never the
/// address a name resolved to (an internal network map); the log has it.
fn check_addresses(
    ips: &[IpAddr],
    target: &Target,
    allow_private: bool,
) -> Result<Vec<IpAddr>, Refusal> {
    if ips.is_empty() {
        return Err(Refusal::Failed(EgressError::Upstream(format!(
            "`{}` has no addresses",
            target.host
        ))));
    }
    if allow_private {
        return Ok(ips.to_vec());
    }
    if let Some((ip, range)) = ips
        .iter()
        .find_map(|ip| address::blocked(*ip).map(|r| (ip, r)))
    {
        tracing::warn!(host = %target.host, address = %ip, range, "egress to a blocked address refused");
        return Err(Refusal::Denied {
            why: format!(
                "`{}` is or resolves to an address in a blocked range: {range}",
                target.host
            ),
            line: Some(
                "allow_private = true on the entry (only for local services you trust)".into(),
            ),
        });
    }
    Ok(ips.to_vec())
}
