//! The HTTP fixtures of a tests file's case (`[[case.fixture]]`): what
//! they declare, and what the requests they received must show. The
//! exchange itself is served by the host's egress gate
//! ([`portcullis::Fixtures`]): only the final send is replaced.

use portcullis::{DEFAULT_FIXTURE_ADDRESS, Fixture, Received};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// One `[[case.fixture]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Spec {
    /// The method answered (default `GET`).
    #[serde(default = "get")]
    method: String,
    /// The URL answered, query included.
    url: String,
    /// When set, the request body must be exactly this.
    request_body: Option<String>,
    /// What the URL's host resolves to; the real address check runs on
    /// them (default: one public address).
    #[serde(default)]
    addresses: Vec<IpAddr>,
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The response body, as text...
    body: Option<String>,
    /// ... or as JSON (`content-type: application/json` unless set).
    json: Option<Value>,
    #[serde(default)]
    delay_ms: u64,
    /// Request headers the fixture must receive (the host's injected
    /// secret, say); their values must not appear in the case's result.
    #[serde(default)]
    expect_headers: Vec<String>,
    /// Request headers the fixture must not receive.
    #[serde(default)]
    absent_headers: Vec<String>,
}

fn get() -> String {
    "GET".into()
}

fn ok() -> u16 {
    200
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
