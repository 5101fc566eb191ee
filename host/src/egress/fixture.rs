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

use super::client::{Bounds, ClientError, Incoming, Outgoing};
use super::resolve::{ResolveFuture, Resolver};
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

/// The fixtures of the case under way and the requests they received.
/// Shared between the test runner and the host.
#[derive(Debug, Default)]
pub struct Fixtures {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    fixtures: Vec<Fixture>,
    received: Vec<Received>,
}

impl Fixtures {
    /// Serves `fixtures` from now on, forgetting what was received.
    pub fn set(&self, fixtures: Vec<Fixture>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.fixtures = fixtures;
        state.received.clear();
    }

    /// The requests received since [`set`](Self::set), in order.
    pub fn take_received(&self) -> Vec<Received> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut state.received)
    }

    /// The gate's last step, offline: records the checked request and
    /// answers it from the first matching fixture, under the same deadline
    /// and response cap as the real client.
    pub(super) async fn send(
        &self,
        out: Outgoing<'_>,
        bounds: Bounds,
    ) -> Result<Incoming, ClientError> {
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
        let url = format!(
            "{}://{}{port}{}",
            out.target.scheme, out.target.host, out.path_and_query
        );
        let method = out.method.as_str().to_string();
        let found = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let index = state.fixtures.iter().position(|f| {
                f.method == method
                    && same_url(&f.url, &url)
                    && f.request_body.as_ref().is_none_or(|b| *b == out.body)
            });
            state.received.push(Received {
                fixture: index,
                method: method.clone(),
                url: url.clone(),
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
                body: out.body,
            });
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
}

/// Names resolve to what the fixtures declare for their host; any other
/// name does not resolve.
impl Resolver for std::sync::Arc<Fixtures> {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> ResolveFuture<'a> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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
