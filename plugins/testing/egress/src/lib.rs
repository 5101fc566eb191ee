//! `egress`: a test-only plugin that sends whatever requests its arguments
//! describe, so the integration tests can drive every bypass attempt
//! through the host's egress gate. Never grant it anything real.
//!
//! Build: `plugins/build.sh` (output in `plugins/dist/egress.wasm`).

use portcullis_sdk::http::{HttpError, Request, Response};
use portcullis_sdk::prelude::*;

portcullis_sdk::export_plugin! {
    /// Sends the requests described, in order, and reports each outcome
    /// (response or error kind and message).
    send: read,
}

/// One request to send.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Req {
    /// The method (default GET).
    method: Option<String>,
    /// The URL.
    url: String,
    /// Headers as `[name, value]` pairs.
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// Body text.
    body: Option<String>,
    /// A secret to ask for.
    secret: Option<String>,
    /// How many times to send it (default 1).
    times: Option<u32>,
}

/// The requests.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Send {
    /// Sent in order.
    requests: Vec<Req>,
    /// Abort after the last request, so the host can dump (and a test can
    /// inspect) this instance's whole linear memory.
    #[serde(default)]
    then_abort: bool,
}

fn outcome(result: Result<Response, HttpError>) -> Value {
    match result {
        Ok(r) => json!({
            "status": r.status,
            "headers": r.headers,
            "bytes": r.body.len(),
            "body": String::from_utf8_lossy(&r.body[..r.body.len().min(4096)]),
        }),
        Err(e) => json!({ "error": e.kind(), "message": e.to_string() }),
    }
}

fn send(input: Send) -> Result<Vec<Value>, ToolError> {
    let mut out = Vec::new();
    for req in input.requests {
        for _ in 0..req.times.unwrap_or(1) {
            let mut request = Request::new(req.method.as_deref().unwrap_or("GET"), &req.url);
            for (name, value) in &req.headers {
                request = request.header(name, value);
            }
            if let Some(body) = &req.body {
                request = request.body(body.as_bytes());
            }
            if let Some(secret) = &req.secret {
                request = request.secret(secret);
            }
            out.push(outcome(request.send()));
        }
    }
    if input.then_abort {
        // The responses stay alive in memory up to the trap.
        std::hint::black_box(&out);
        std::process::abort();
    }
    Ok(out)
}
