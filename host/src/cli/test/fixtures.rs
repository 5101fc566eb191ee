//! The HTTP fixtures of a tests file's case (`[[case.fixture]]`): what
//! they declare, and what the requests they received must show. The
//! exchange itself is served by the host's egress gate
//! ([`portcullis::Fixtures`]): only the final send is replaced.

use portcullis::{DEFAULT_FIXTURE_ADDRESS, Fixture, Received, Recorded};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// One `[[case.fixture]]` (written back in this field order by
/// `--record`, defaults left out).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Spec {
    /// The method answered (default `GET`).
    #[serde(default = "get", skip_serializing_if = "is_get")]
    pub(super) method: String,
    /// The URL answered, query included.
    pub(super) url: String,
    /// When set, the request body must be exactly this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) request_body: Option<String>,
    /// What the URL's host resolves to; the real address check runs on
    /// them (default: one public address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) addresses: Vec<IpAddr>,
    #[serde(default = "ok", skip_serializing_if = "is_ok")]
    pub(super) status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) headers: BTreeMap<String, String>,
    /// The response body, as text...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) body: Option<String>,
    /// ... or as JSON (`content-type: application/json` unless set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) json: Option<Value>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) delay_ms: u64,
    /// Request headers the fixture must receive (the host's injected
    /// secret, say); their values must not appear in the case's result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) expect_headers: Vec<String>,
    /// Request headers the fixture must not receive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) absent_headers: Vec<String>,
}

fn get() -> String {
    "GET".into()
}

fn is_get(method: &str) -> bool {
    method == "GET"
}

fn ok() -> u16 {
    200
}

fn is_ok(status: &u16) -> bool {
    *status == 200
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Whether a case's fixtures are well formed.
pub(super) fn check(specs: &[Spec]) -> Result<(), String> {
    for spec in specs {
        if spec.body.is_some() && spec.json.is_some() {
            return Err(format!("fixture `{}` has both `body` and `json`", spec.url));
        }
        let url = url::Url::parse(&spec.url)
            .map_err(|e| format!("fixture URL `{}` is not a URL: {e}", spec.url))?;
        if url.host_str().is_none() {
            return Err(format!("fixture URL `{}` has no host", spec.url));
        }
        if !(100..=599).contains(&spec.status) {
            return Err(format!(
                "fixture `{}` has status {}, not in 100..=599",
                spec.url, spec.status
            ));
        }
    }
    Ok(())
}

impl Spec {
    /// The fixture the host serves.
    pub(super) fn fixture(&self) -> Fixture {
        let mut fixture = Fixture::new(&self.method, &self.url);
        fixture.request_body = self.request_body.clone().map(String::into_bytes);
        fixture.addresses = if self.addresses.is_empty() {
            vec![DEFAULT_FIXTURE_ADDRESS]
        } else {
            self.addresses.clone()
        };
        fixture.status = self.status;
        fixture.headers = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        fixture.body = match (&self.body, &self.json) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(json)) => {
                if !self
                    .headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("content-type"))
                {
                    fixture
                        .headers
                        .push(("content-type".into(), "application/json".into()));
                }
                json.to_string().into_bytes()
            }
            (None, None) => Vec::new(),
        };
        fixture.delay = Duration::from_millis(self.delay_ms);
        fixture
    }
}

impl Spec {
    /// The fixture a recording made of one exchange, keeping what the
    /// author declared on the fixture it replaces (same method and URL):
    /// the request headers it expects or refuses, and its delay. A header
    /// that carried the host's secret is expected by name. The response
    /// body is `json` when that replays byte for byte, else `body`.
    pub(super) fn recorded(recorded: &Recorded, old: &[Spec]) -> Spec {
        let f = &recorded.fixture;
        // The same URL, else the same path (a recorded query may carry a
        // scrubbed secret the author's fixture did not spell).
        let same = old
            .iter()
            .find(|s| s.method.eq_ignore_ascii_case(&f.method) && same_url(&s.url, &f.url))
            .or_else(|| {
                old.iter()
                    .find(|s| s.method.eq_ignore_ascii_case(&f.method) && same_path(&s.url, &f.url))
            });
        let text = String::from_utf8_lossy(&f.body).into_owned();
        let json = serde_json::from_str::<Value>(&text).ok().filter(|v| {
            // Compact, in serde_json's key order: what `json` replays.
            serde_json::to_string(v).is_ok_and(|compact| compact == text)
                && super::record::toml_value(v).is_some()
        });
        let mut headers: BTreeMap<String, String> = f.headers.iter().cloned().collect();
        if json.is_some()
            && headers
                .get("content-type")
                .is_some_and(|t| t == "application/json")
        {
            headers.remove("content-type");
        }
        let mut expect_headers = same.map(|s| s.expect_headers.clone()).unwrap_or_default();
        for name in &recorded.secret_headers {
            if !expect_headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                expect_headers.push(name.clone());
            }
        }
        Spec {
            method: f.method.clone(),
            url: f.url.clone(),
            request_body: f
                .request_body
                .as_ref()
                .and_then(|b| String::from_utf8(b.clone()).ok()),
            addresses: f.addresses.clone(),
            status: f.status,
            headers,
            body: json.is_none().then_some(text),
            json,
            delay_ms: same.map_or(0, |s| s.delay_ms),
            expect_headers,
            absent_headers: same.map(|s| s.absent_headers.clone()).unwrap_or_default(),
        }
    }
}

fn same_path(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin() && a.path() == b.path(),
        _ => false,
    }
}

fn same_url(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Whether the requests the fixtures received are what they expect, and
/// no value a fixture expected in a header shows in `result` (the case's
/// output or error text). Failure messages name headers, never values.
pub(super) fn judge(specs: &[Spec], received: &[Received], result: &str) -> Result<(), String> {
    for (i, spec) in specs.iter().enumerate() {
        if spec.expect_headers.is_empty() && spec.absent_headers.is_empty() {
            continue;
        }
        let Some(request) = received.iter().find(|r| r.fixture == Some(i)) else {
            return Err(format!(
                "fixture `{} {}` was never requested",
                spec.method, spec.url
            ));
        };
        let value = |name: &str| {
            request
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        for name in &spec.expect_headers {
            let Some(got) = value(name) else {
                return Err(format!(
                    "fixture `{} {}` received no `{name}` header",
                    spec.method, spec.url
                ));
            };
            // The whole value and its last word (the token of
            // `Bearer TOKEN`), when long enough to mean something.
            let words = [got, got.rsplit(' ').next().unwrap_or(got)];
            if words.iter().any(|w| w.len() >= 8 && result.contains(w)) {
                return Err(format!(
                    "the value fixture `{} {}` received in `{name}` appears in the result",
                    spec.method, spec.url
                ));
            }
        }
        for name in &spec.absent_headers {
            if value(name).is_some() {
                return Err(format!(
                    "fixture `{} {}` received a `{name}` header (value not shown)",
                    spec.method, spec.url
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml: &str) -> Spec {
        toml::from_str(toml).expect("a fixture")
    }

    #[test]
    fn a_value_the_fixture_received_must_not_show_in_the_result() {
        let specs = [spec(
            "url = \"https://a.example/x\"\nexpect_headers = [\"authorization\"]",
        )];
        let received = [Received {
            fixture: Some(0),
            method: "GET".into(),
            url: "https://a.example/x".into(),
            headers: vec![("authorization".into(), "Bearer sekrit-token".into())],
            body: Vec::new(),
        }];
        assert!(judge(&specs, &received, "{\"ok\":true}").is_ok());
        let leaked =
            judge(&specs, &received, "{\"t\":\"sekrit-token\"}").expect_err("the token shows");
        assert!(!leaked.contains("sekrit"), "{leaked}");
        assert!(judge(&specs, &[], "").is_err());
    }
}
