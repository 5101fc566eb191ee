//! Offline HTTP for tests (`portcullis test`,
//! [`HostBuilder::http_fixtures`](crate::HostBuilder::http_fixtures)):
//! the egress gate's last step, the send, served from declared fixtures
//! instead of the network. Every step before it runs as in production
//! (counting, sizes, headers, method, named secret, URL, allowlist,
//! deadlines, address check, secret binding and injection, the
//! `egress_sent` record); so does everything after it (the response cap,
//! scrubbing, the `egress` record). Two things differ, both here:
//!
//! - names resolve to the addresses the fixtures declare for their host
//!   (a name no fixture declares fails to resolve, so nothing reaches the
//!   network), and those addresses go through the real address check;
//! - no connection is made: the checked request, secret injected, is
//!   matched against the fixtures and recorded, so a test can see what a
//!   real upstream would have received.
//!
//! Recording ([`Fixtures::record`], `portcullis test --record`) turns the
//! second difference off: names resolve through the system resolver and
//! the checked request goes to the real upstream, as in production; the
//! exchange is kept as a [`Fixture`] with every secret value scrubbed
//! (URL, request body, response headers and body), so it can be written
//! into a tests file. Offline, a fixture's URL and request body match a
//! request whose secret values, scrubbed the same way, read as the
//! fixture's `[redacted:NAME]`: a recorded query-string secret matches
//! whatever value the test's secret source holds.

use super::client::{self, Bounds, ClientError, Incoming, Outgoing};
use super::resolve::{ResolveFuture, Resolver, SystemResolver};
use crate::secrets::Scrubber;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// What a fixture's host resolves to when it declares no addresses: a
/// public address (nothing ever connects to it).
pub const DEFAULT_FIXTURE_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8));

/// One canned exchange: a request it answers and the answer.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The method it answers, upper case.
    pub method: String,
    /// The URL it answers, compared after WHATWG parsing (so
    /// `https://A.example:443/x` is `https://a.example/x`), query included.
    pub url: String,
    /// When set, the request body must be exactly this.
    pub request_body: Option<Vec<u8>>,
    /// What the fixture's host resolves to.
    pub addresses: Vec<IpAddr>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How long the upstream takes to answer; the request's real deadline
    /// still applies.
    pub delay: Duration,
}

impl Fixture {
    /// A `200` with an empty body for `method url`, at
    /// [`DEFAULT_FIXTURE_ADDRESS`].
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Fixture {
        Fixture {
            method: method.into().to_ascii_uppercase(),
            url: url.into(),
            request_body: None,
            addresses: vec![DEFAULT_FIXTURE_ADDRESS],
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

/// A request that passed the gate, as the upstream would have received
/// it: the host's injected secret included. Test code only: never print
/// header values.
#[derive(Debug, Clone)]
pub struct Received {
    /// The index of the fixture that answered, if one did.
    pub fixture: Option<usize>,
    pub method: String,
    pub url: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One exchange with a real upstream, kept by a recording
/// ([`Fixtures::record`]) with every secret value scrubbed.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// A fixture standing for it: the request as sent (URL and body
    /// scrubbed; `request_body` set when there was one), the addresses the
    /// name resolved to when one of them is in a blocked range (allowed by
    /// `allow_private`; otherwise none, and the default public address
    /// stands for them), the response as received (headers and body scrubbed; `date`
    /// and cookies left out).
    pub fixture: Fixture,
    /// Request headers whose value carried a secret (the host's
    /// injection), lower case; their values are not kept.
    pub secret_headers: Vec<String>,
    /// Why no fixture can stand for it (the upstream failed, a binary
    /// body), scrubbed; `None` when `fixture` is whole.
    pub failed: Option<String>,
}

/// The fixtures of the case under way and the requests they received, or
/// a recording of the real exchanges. Shared between the test runner and
/// the host.
#[derive(Debug, Default)]
pub struct Fixtures {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Real upstreams, kept in `recorded`, instead of `fixtures`.
    recording: bool,
    fixtures: Vec<Fixture>,
    received: Vec<Received>,
    recorded: Vec<Recorded>,
}

impl Fixtures {
    /// Serves `fixtures` from now on, offline, forgetting what was
    /// received.
    pub fn set(&self, fixtures: Vec<Fixture>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.recording = false;
        state.fixtures = fixtures;
        state.received.clear();
        state.recorded.clear();
    }

    /// From now on sends every request that passes the gate to its real
    /// upstream (names resolved by the system resolver) and keeps the
    /// exchanges ([`take_recorded`](Self::take_recorded)); the requests
    /// are received as offline, each naming the exchange it is.
    pub fn record(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.recording = true;
        state.fixtures.clear();
        state.received.clear();
        state.recorded.clear();
    }

    /// The requests received since [`set`](Self::set) or
    /// [`record`](Self::record), in order.
    pub fn take_received(&self) -> Vec<Received> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut state.received)
    }

    /// The exchanges recorded since [`record`](Self::record), in order.
    pub fn take_recorded(&self) -> Vec<Recorded> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut state.recorded)
    }

    /// The gate's last step in tests: offline, records the checked request
    /// and answers it from the first matching fixture, under the same
    /// deadline and response cap as the real client; recording, sends it
    /// with the real client and keeps the exchange, scrubbed with
    /// `scrubber` (the call's).
    pub(super) async fn send(
        &self,
        out: Outgoing<'_>,
        bounds: Bounds,
        network: (&client::Tls, &client::Pool),
        scrubber: &Scrubber,
    ) -> Result<Incoming, ClientError> {
        let url = url_of(&out);
        let method = out.method.as_str().to_string();
        let recording = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recording;
        if recording {
            return self.send_recorded(out, bounds, network, scrubber).await;
        }
        let clean_url = scrubber.scrub_str(&url);
        let clean_body = scrubber.scrub_bytes(&out.body);
        let found = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let index = state.fixtures.iter().position(|f| {
                f.method == method
                    && (same_url(&f.url, &url) || same_url(&f.url, &clean_url))
                    && f.request_body
                        .as_ref()
                        .is_none_or(|b| *b == out.body || b.as_slice() == clean_body.as_ref())
            });
            state.received.push(received(index, &out, &url));
            index.map(|i| state.fixtures[i].clone())
        };
        let Some(fixture) = found else {
            return Err(ClientError::Upstream(format!(
                "no fixture answers {method} {url} (tests run offline)"
            )));
        };
        if !fixture.delay.is_zero() {
            let ready = Instant::now() + fixture.delay;
            if ready > bounds.deadline {
                tokio::time::sleep_until(bounds.deadline).await;
                return Err(ClientError::Timeout(
                    "the upstream did not answer by the request's deadline".into(),
                ));
            }
            tokio::time::sleep_until(ready).await;
        }
        if fixture.body.len() as u64 > bounds.max_response {
            return Err(ClientError::TooLarge(format!(
                "the response body is over the limit of {} bytes",
                bounds.max_response
            )));
        }
        Ok(Incoming {
            status: fixture.status,
            headers: fixture.headers,
            body: fixture.body,
        })
    }

    /// Sends `out` to its real upstream and keeps the exchange, scrubbed.
    async fn send_recorded(
        &self,
        out: Outgoing<'_>,
        bounds: Bounds,
        (tls, pool): (&client::Tls, &client::Pool),
        scrubber: &Scrubber,
    ) -> Result<Incoming, ClientError> {
        let url = url_of(&out);
        let mut fixture = Fixture::new(out.method.as_str(), scrubber.scrub_str(&url));
        if !out.body.is_empty() {
            fixture.request_body = Some(scrubber.scrub_bytes(&out.body).into_owned());
        }
        let mut addresses: Vec<IpAddr> = Vec::new();
        for addr in &out.addrs {
            if !addresses.contains(&addr.ip()) {
                addresses.push(addr.ip());
            }
        }
        // An IP literal is its own address; a name resolving only to public
        // addresses replays as well at the default one.
        let literal = out.target.host.parse::<IpAddr>().is_ok() || out.target.host.starts_with('[');
        fixture.addresses = if !literal
            && addresses
                .iter()
                .any(|ip| super::address::blocked(*ip).is_some())
        {
            addresses
        } else {
            Vec::new()
        };
        let secret_headers = out
            .headers
            .iter()
            .filter(|(_, v)| scrubber.find(v.as_bytes()).is_some())
            .map(|(k, _)| k.as_str().to_string())
            .collect();
        let mut received_request = received(None, &out, &url);
        let result = client::send(out, bounds, tls, pool).await;
        let failed = match &result {
            Err(
                ClientError::Timeout(why) | ClientError::TooLarge(why) | ClientError::Upstream(why),
            ) => Some(scrubber.scrub_str(why).into_owned()),
            Ok(incoming) => {
                fixture.status = incoming.status;
                fixture.headers = incoming
                    .headers
                    .iter()
                    .filter(|(k, _)| !UNRECORDED.iter().any(|u| k.eq_ignore_ascii_case(u)))
                    .map(|(k, v)| (k.clone(), scrubber.scrub_str(v).into_owned()))
                    .collect();
                fixture.body = scrubber.scrub_bytes(&incoming.body).into_owned();
                std::str::from_utf8(&fixture.body).err().map(|_| {
                    "the response body is not UTF-8 text, which a tests file cannot hold".into()
                })
            }
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if failed.is_none() {
            received_request.fixture = Some(state.recorded.len());
        }
        state.received.push(received_request);
        state.recorded.push(Recorded {
            fixture,
            secret_headers,
            failed,
        });
        result
    }
}

/// Response headers a recording leaves out: the date changes on every
/// run, and a cookie is a credential of its own.
const UNRECORDED: [&str; 3] = ["date", "set-cookie", "set-cookie2"];

/// The URL of a checked request, the default port left out.
fn url_of(out: &Outgoing<'_>) -> String {
    let default_port = if out.target.scheme == "https" {
        443
    } else {
        80
    };
    let port = if out.target.port == default_port {
        String::new()
    } else {
        format!(":{}", out.target.port)
    };
    format!(
        "{}://{}{port}{}",
        out.target.scheme, out.target.host, out.path_and_query
    )
}

/// `out` as the upstream receives it, answered by fixture `index`.
fn received(index: Option<usize>, out: &Outgoing<'_>, url: &str) -> Received {
    Received {
        fixture: index,
        method: out.method.as_str().to_string(),
        url: url.to_string(),
        headers: out
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: out.body.clone(),
    }
}

/// Names resolve to what the fixtures declare for their host; any other
/// name does not resolve. Recording, they resolve as in production.
impl Resolver for std::sync::Arc<Fixtures> {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        static SYSTEM: SystemResolver = SystemResolver;
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.recording {
            drop(state);
            return SYSTEM.resolve(host, port);
        }
        let mut addresses: Vec<IpAddr> = Vec::new();
        for fixture in &state.fixtures {
            let Ok(url) = url::Url::parse(&fixture.url) else {
                continue;
            };
            if url.host_str() == Some(host) {
                for ip in &fixture.addresses {
                    if !addresses.contains(ip) {
                        addresses.push(*ip);
                    }
                }
            }
        }
        drop(state);
        let result = if addresses.is_empty() {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no fixture is for `{host}` (tests run offline)"),
            ))
        } else {
            Ok(addresses)
        };
        Box::pin(std::future::ready(result))
    }
}

/// Whether two URLs are the same after WHATWG parsing.
fn same_url(fixture: &str, sent: &str) -> bool {
    match (url::Url::parse(fixture), url::Url::parse(sent)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
