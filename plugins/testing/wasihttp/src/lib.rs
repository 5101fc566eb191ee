//! `wasihttp`: a test-only plugin that fetches through the standard
//! `wasi:http/outgoing-handler` interface, as components built by
//! JavaScript, Python or Go toolchains do, so the integration tests can
//! drive every bypass attempt through that interface too. Never grant it
//! anything real.
//!
//! Build: `plugins/build.sh` (output in `plugins/dist/wasihttp.wasm`).

use portcullis_sdk::prelude::*;
use std::time::Duration;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasip2::io::streams::StreamError;

portcullis_sdk::export_plugin! {
    /// Sends the requests described through `wasi:http`, in order, and
    /// reports each outcome (response, or the error code).
    send: read,
}

/// One request to send.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Req {
    /// The method (default GET).
    method: Option<String>,
    /// The URL, `scheme://authority/path?query`.
    url: String,
    /// Headers as `[name, value]` pairs.
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// Body text.
    body: Option<String>,
    /// How many times to send it (default 1).
    times: Option<u32>,
    /// Connect timeout to ask for, in milliseconds.
    connect_timeout_ms: Option<u64>,
    /// First-byte timeout to ask for, in milliseconds.
    first_byte_timeout_ms: Option<u64>,
}

/// The requests.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Send {
    /// Sent in order.
    requests: Vec<Req>,
}

fn send(input: Send) -> Result<Vec<Value>, ToolError> {
    let mut out = Vec::new();
    for req in &input.requests {
        for _ in 0..req.times.unwrap_or(1) {
            out.push(match one(req) {
                Ok(value) | Err(value) => value,
            });
        }
    }
    Ok(out)
}

fn failed(kind: &str, detail: impl std::fmt::Debug) -> Value {
    json!({ "error": kind, "message": format!("{detail:?}") })
}

fn one(req: &Req) -> Result<Value, Value> {
    let (scheme, rest) = req
        .url
        .split_once("://")
        .ok_or_else(|| failed("url", "no scheme"))?;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    };

    let headers = Fields::new();
    for (name, value) in &req.headers {
        headers
            .append(name, value.as_bytes())
            .map_err(|e| failed("header", e))?;
    }
    let request = OutgoingRequest::new(headers);
    let method = match req.method.as_deref().unwrap_or("GET") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    };
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    request
        .set_method(&method)
        .map_err(|()| failed("request", "method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| failed("request", "scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| failed("request", "authority"))?;
    request
        .set_path_with_query(Some(&path))
        .map_err(|()| failed("request", "path"))?;
    let body = request.body().map_err(|()| failed("request", "body"))?;

    let options = if req.connect_timeout_ms.is_some() || req.first_byte_timeout_ms.is_some() {
        let options = RequestOptions::new();
        let nanos = |ms: u64| Duration::from_millis(ms).as_nanos() as u64;
        if let Some(ms) = req.connect_timeout_ms {
            options
                .set_connect_timeout(Some(nanos(ms)))
                .map_err(|()| failed("options", "connect timeout"))?;
        }
        if let Some(ms) = req.first_byte_timeout_ms {
            options
                .set_first_byte_timeout(Some(nanos(ms)))
                .map_err(|()| failed("options", "first-byte timeout"))?;
        }
        Some(options)
    } else {
        None
    };

    let pending = outgoing_handler::handle(request, options).map_err(|e| failed("handle", e))?;
    // A host that stops reading the body (it is over the limit) closes
    // the stream; the reason then comes with the response.
    let mut write_failed = None;
    {
        let stream = body
            .write()
            .map_err(|()| failed("request", "body stream"))?;
        if let Some(text) = &req.body {
            // `blocking-write-and-flush` takes at most 4096 bytes a call.
            for chunk in text.as_bytes().chunks(4096) {
                if let Err(e) = stream.blocking_write_and_flush(chunk) {
                    write_failed = Some(failed("body", e));
                    break;
                }
            }
        }
    }
    let finished = OutgoingBody::finish(body, None);

    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(failed("response", code)),
        Some(Err(())) | None => return Err(failed("response", "no response")),
    };
    if let Some(failure) = write_failed {
        return Err(failure);
    }
    finished.map_err(|e| failed("body", e))?;
    let status = response.status();
    let headers: Vec<(String, String)> = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    let incoming = response
        .consume()
        .map_err(|()| failed("response", "body"))?;
    let stream = incoming
        .stream()
        .map_err(|()| failed("response", "body stream"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(failed("body", e)),
        }
    }
    Ok(json!({
        "status": status,
        "headers": headers,
        "bytes": bytes.len(),
        "body": String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]),
    }))
}
