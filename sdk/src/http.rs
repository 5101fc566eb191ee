//! Outbound HTTP through the host's egress gate.
//!
//! The plugin's manifest entry must grant the destinations (`http = [...]`);
//! a plugin that uses this module without such a grant is refused when it
//! loads. The host checks every request (allowlist, resolved addresses,
//! limits) and never follows redirects: a 3xx comes back as a [`Response`].
//!
//! ```no_run
//! use portcullis_sdk::http::{self, Request};
//! # fn run() -> Result<(), http::HttpError> {
//! let page = http::get("https://example.com/")?;
//! let text = page.text();
//! let created = Request::post("https://api.example.com/v1/items")
//!     .json(&portcullis_sdk::json!({"name": "x"}))
//!     .header("x-request-id", "42")
//!     .send()?
//!     .error_for_status()?;
//! # let _ = (text, created);
//! # Ok(())
//! # }
//! ```

use crate::ToolError;
use crate::bindings::portcullis::tool::http as wit;

/// Why a request did not produce a response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The host's policy refused it (the text says why).
    Denied(String),
    /// The request is malformed or over a size limit.
    InvalidRequest(String),
    /// Connecting or the whole exchange took too long.
    Timeout(String),
    /// The response is over the plugin's response limit.
    TooLarge(String),
    /// The call already made as many requests as it may.
    TooManyRequests(String),
    /// The destination failed.
    Upstream(String),
    /// The response had an error status (from
    /// [`Response::error_for_status`]).
    Status(u16),
    /// The body is not the JSON expected (from [`Response::json`]).
    Decode(String),
}

impl HttpError {
    /// `denied`, `invalid_request`, `timeout`, `too_large`,
    /// `too_many_requests`, `upstream`, `status` or `decode`.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::Denied(_) => "denied",
            HttpError::InvalidRequest(_) => "invalid_request",
            HttpError::Timeout(_) => "timeout",
            HttpError::TooLarge(_) => "too_large",
            HttpError::TooManyRequests(_) => "too_many_requests",
            HttpError::Upstream(_) => "upstream",
            HttpError::Status(_) => "status",
            HttpError::Decode(_) => "decode",
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Status(code) => write!(f, "status: the server answered {code}"),
            HttpError::Denied(m)
            | HttpError::InvalidRequest(m)
            | HttpError::Timeout(m)
            | HttpError::TooLarge(m)
            | HttpError::TooManyRequests(m)
            | HttpError::Upstream(m)
            | HttpError::Decode(m) => write!(f, "{}: {m}", self.kind()),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for ToolError {
    /// A denial stays a denial; everything else is the tool's failure.
    fn from(e: HttpError) -> ToolError {
        match e {
            HttpError::Denied(m) => ToolError::Denied(m),
            other => ToolError::Internal(other.to_string()),
        }
    }
}

/// A request being built; [`send`](Request::send) it.
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent"]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    secret: Option<String>,
    /// Why the request cannot be sent (a JSON body that did not serialise):
    /// [`send`](Request::send) reports it instead of sending.
    invalid: Option<String>,
}

impl Request {
    /// A request with any method.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            secret: None,
            invalid: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Request {
        Request::new("POST", url)
    }

    /// Adds a header (`host`, hop-by-hop and framing headers are refused by
    /// the host).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Some(body.into());
        self
    }

    /// Sets a JSON body and `content-type: application/json`. A value that
    /// does not serialise (a map with non-string keys, a failing
    /// `Serialize`) makes [`send`](Request::send) return
    /// [`HttpError::InvalidRequest`] without sending anything.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Request {
        match serde_json::to_vec(value) {
            Ok(body) => self.header("content-type", "application/json").body(body),
            Err(e) => {
                self.invalid = Some(format!("the JSON body does not serialise: {e}"));
                self
            }
        }
    }

    /// Asks the host to attach the secret `name` (the plugin never sees
    /// its value).
    pub fn secret(mut self, name: impl Into<String>) -> Request {
        self.secret = Some(name.into());
        self
    }

    /// Sends the request and waits for the whole response.
    ///
    /// # Errors
    ///
    /// Why the host or the destination did not produce a response.
    pub fn send(self) -> Result<Response, HttpError> {
        if let Some(why) = self.invalid {
            return Err(HttpError::InvalidRequest(why));
        }
        let request = wit::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            secret: self.secret,
        };
        match wit::send(&request) {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(wit::Error::Denied(m)) => Err(HttpError::Denied(m)),
            Err(wit::Error::InvalidRequest(m)) => Err(HttpError::InvalidRequest(m)),
            Err(wit::Error::Timeout(m)) => Err(HttpError::Timeout(m)),
            Err(wit::Error::TooLarge(m)) => Err(HttpError::TooLarge(m)),
            Err(wit::Error::TooManyRequests(m)) => Err(HttpError::TooManyRequests(m)),
            Err(wit::Error::Upstream(m)) => Err(HttpError::Upstream(m)),
        }
    }
}

/// A complete response (body decompressed, redirects not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether the status is a redirect (3xx with a `location`).
    pub fn redirect_location(&self) -> Option<&str> {
        if (300..400).contains(&self.status) {
            self.header("location")
        } else {
            None
        }
    }

    /// The response itself for a 2xx status, else [`HttpError::Status`].
    ///
    /// # Errors
    ///
    /// [`HttpError::Status`] for any other status.
    pub fn error_for_status(self) -> Result<Response, HttpError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(HttpError::Status(self.status))
        }
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    ///
    /// [`HttpError::Decode`] if it does not parse as `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Decode(e.to_string()))
    }
}

/// `GET url`.
///
/// # Errors
///
/// See [`Request::send`].
pub fn get(url: impl Into<String>) -> Result<Response, HttpError> {
    Request::get(url).send()
}

/// `GET url`, expecting a 2xx JSON response.
///
/// # Errors
///
/// See [`Request::send`], plus [`HttpError::Status`] and
/// [`HttpError::Decode`].
pub fn get_json<T: serde::de::DeserializeOwned>(url: impl Into<String>) -> Result<T, HttpError> {
    get(url)?.error_for_status()?.json()
}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn a_json_body_that_does_not_serialise_is_an_error_not_an_empty_body() {
        // JSON object keys must be strings.
        let map = std::collections::BTreeMap::from([((1, 2), 3)]);
        let request = Request::post("https://api.example.com").json(&map);
        assert!(request.body.is_none(), "an empty body would be sent");
        assert!(
            request
                .invalid
                .as_deref()
                .is_some_and(|why| why.contains("does not serialise")),
            "{:?}",
            request.invalid
        );
        let fine = Request::post("https://api.example.com").json(&[1, 2]);
        assert_eq!(fine.body.as_deref(), Some(&b"[1,2]"[..]));
        assert!(fine.invalid.is_none());
    }
}
