//! `wasi:http/outgoing-handler` behind the egress gate.
//!
//! Components built by JavaScript, Python or Go toolchains fetch through
//! `wasi:http`. wasmtime-wasi-http parses the guest's request; instead of
//! its own sender (which resolves and connects with no address check), every
//! request goes through the same [`CallEgress`] as `portcullis:tool/http`:
//! the same allowlist, SSRF defence, limits, secrets, scrubbing and audit
//! records. What differs is only the shape:
//!
//! - the guest's request options can only shorten the host's timeouts;
//! - a request cannot name a secret, so the first granted secret bound to
//!   the destination is attached (the manifest's binding is the rule);
//!   headers a granted secret is injected into cannot be set by the guest;
//! - the response reaches the guest once it is complete (it was capped,
//!   decompressed and scrubbed on the host), with its length recomputed;
//! - errors are `wasi:http` error codes; the reason for a denial is in the
//!   audit log and the operator's log.

use crate::egress::{CallEgress, EgressError, GuestRequest, GuestTimeouts, SecretChoice};
use crate::policy::allowlist::host_header;
use crate::policy::caps;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::future::Future;
use std::sync::Arc;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpHooks,
};

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// The `wasi:http` hooks of one call.
pub(crate) struct GateHooks {
    /// `None` without HTTP grants (and while listing tools): every request
    /// is denied.
    egress: Option<Arc<CallEgress>>,
}

impl GateHooks {
    pub(crate) fn new(egress: Option<Arc<CallEgress>>) -> GateHooks {
        GateHooks { egress }
    }
}

impl WasiHttpHooks for GateHooks {
    /// The gate's own rule (the host's headers, and every header a granted
    /// secret is injected into), applied when the guest builds its fields.
    /// The guest's `content-length` is let through: wasi-http checks it
    /// against the body, and the host then frames the request itself.
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let egress = self.egress.clone();
        Arc::new(move |name| {
            if DEFAULT_FORBIDDEN_HEADERS.contains(name) {
                return true;
            }
            let name = name.as_str();
            (name != "content-length" && host_header(name))
                || egress
                    .as_ref()
                    .is_some_and(|e| e.injected_into(name).is_some())
        })
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        // What one guest write may put in the host's body channel: small,
        // since the body is buffered only up to the request body limit.
        64 * 1024
    }

    fn set_host_header(&mut self) -> bool {
        // The gate's client sets `Host` from the checked URL.
        false
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: IoFuture,
    ) -> SendFuture {
        let egress = self.egress.clone();
        Box::new(async move {
            let Some(egress) = egress else {
                tracing::warn!("wasi:http request denied: this plugin has no HTTP grants");
                return Err(Error::HttpRequestDenied);
            };
            let response = send(&egress, request, options).await?;
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}

async fn send(
    egress: &CallEgress,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<http::Response<WasiBody>, Error> {
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_string();
    let url = parts.uri.to_string();
    // Counted before its body is read: a guest cannot have more requests
    // buffering in the host than it may make.
    let counted = egress.reserve(&method, &url).map_err(error_code)?;
    let refuse = |counted, why: String| {
        egress.refuse(counted, &method, &url, &why);
        Error::InternalError(Some(why))
    };
    // Sized before anything is copied: the guest's header map cannot make
    // the host allocate past the gate's caps (the gate checks the copy too).
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if let Some(why) = caps::header_excess(parts.headers.len(), header_bytes) {
        return Err(refuse(counted, why));
    }
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        if name == http::header::CONTENT_LENGTH {
            continue;
        }
        let Ok(value) = value.to_str() else {
            return Err(refuse(
                counted,
                format!("header `{name}` is not visible ASCII text"),
            ));
        };
        headers.push((name.as_str().to_string(), value.to_string()));
    }
    // Read one byte past the limit, so the gate refuses (and records) an
    // oversized body without the host buffering more of it.
    let limit = egress.request_body_limit().saturating_add(1);
    let body = match tokio::time::timeout_at(egress.deadline(), collect(body, limit)).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            return Err(refuse(
                counted,
                format!("the request body could not be read: {e}"),
            ));
        }
        Err(_) => {
            return Err(refuse(
                counted,
                "the request body did not end before the call's deadline".into(),
            ));
        }
    };
    let outcome = egress
        .send_counted(
            counted,
            GuestRequest {
                method: method.clone(),
                url: url.clone(),
                headers,
                body: (!body.is_empty()).then_some(body),
                secret: SecretChoice::ByDestination,
                timeouts: GuestTimeouts {
                    connect: options.and_then(|o| o.connect_timeout),
                    first_byte: options.and_then(|o| o.first_byte_timeout),
                },
            },
        )
        .await;
    let response = match outcome {
        // Too many denials: the sandbox sees the gate stop and ends the
        // call; the guest sees one more denial meanwhile.
        Err(_suspicious) => return Err(Error::HttpRequestDenied),
        Ok(Err(e)) => return Err(error_code(e)),
        Ok(Ok(response)) => response,
    };
    // The gate's client dropped the upstream's framing headers; the body is
    // complete (and may be shorter after scrubbing), so its length is ours.
    let mut builder = http::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder = builder.header(http::header::CONTENT_LENGTH, response.body.len());
    let body = Full::new(Bytes::from(response.body))
        .map_err(|never| match never {})
        .boxed_unsync();
    builder
        .body(body)
        .map_err(|e| Error::InternalError(Some(format!("cannot build the response: {e}"))))
}

/// The request body, at most `limit` bytes of it.
async fn collect(mut body: WasiBody, limit: u64) -> Result<Vec<u8>, Error> {
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let room =
                usize::try_from(limit.saturating_sub(collected.len() as u64)).unwrap_or(usize::MAX);
            collected.extend_from_slice(&data[..data.len().min(room)]);
            if collected.len() as u64 >= limit {
                break;
            }
        }
    }
    Ok(collected)
}

/// The gate's outcome as a `wasi:http` error code.
fn error_code(error: EgressError) -> Error {
    match error {
        EgressError::Denied(_) => Error::HttpRequestDenied,
        EgressError::Timeout(_) => Error::HttpResponseTimeout,
        EgressError::TooLarge(_) => Error::HttpResponseBodySize(None),
        EgressError::TooManyRequests(_) => Error::ConnectionLimitReached,
        EgressError::InvalidRequest(why) | EgressError::Upstream(why) => {
            Error::InternalError(Some(why))
        }
    }
}
