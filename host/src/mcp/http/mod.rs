//! MCP over Streamable HTTP: [`McpServer::serve_http`], a small hyper
//! server in front of rmcp's Streamable HTTP service.
//!
//! Every request passes our own checks first (`guard`), in this order,
//! each refusal answered with its status and recorded as an
//! `http_refused` audit record: the `Host` header must name the bound
//! address (403, DNS-rebinding defence); an `Origin` header must be one
//! the operator allowed (403; none by default); the bearer token must be
//! one of the configured ones (401); the path must be `/mcp` (404); the
//! body may not exceed the cap (413) nor nest JSON deeper than the depth
//! cap (400). Only then does rmcp see it, with the token's name attached
//! for the call's record. rmcp serves both protocol eras: legacy clients
//! get a session (in this process), 2026-07-28 clients are served
//! statelessly, so servers sharing the sealing key and the manifest can
//! stand behind one load balancer.

mod guard;
mod sessions;

pub use guard::{BadToken, BearerToken, MIN_TOKEN_BYTES};

use super::{Handler, McpServer, Transport};
use crate::audit::AuditEvent;
use crate::error::Error;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The one path the server answers on.
pub const MCP_PATH: &str = "/mcp";

/// The default cap on a request body: 1 MiB (tool arguments are capped
/// lower by the host anyway).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The default cap on JSON nesting (arrays and objects) in a request body.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 64;

/// The legacy session's header.
const SESSION_HEADER: &str = "mcp-session-id";

/// How long a client may take to send a request's head, then its body.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How the HTTP server admits requests. The default admits nobody: add a
/// [`BearerToken`], or on a loopback address explicitly allow requests
/// without one.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    tokens: Vec<BearerToken>,
    without_token: bool,
    hosts: Vec<String>,
    origins: Vec<String>,
    max_body_bytes: usize,
    max_json_depth: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            tokens: Vec::new(),
            without_token: false,
            hosts: Vec::new(),
            origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
        }
    }
}

impl HttpOptions {
    /// Options with no token, no extra host or origin, and the default
    /// caps.
    pub fn new() -> Self {
        HttpOptions::default()
    }

    /// Admits requests that present `token` (`Authorization: Bearer
    /// SECRET`); its name is the caller of their calls.
    pub fn token(mut self, token: BearerToken) -> Self {
        self.tokens.push(token);
        self
    }

    /// Admits requests without a token. Refused at start on any address
    /// that is not loopback.
    pub fn without_token(mut self) -> Self {
        self.without_token = true;
        self
    }

    /// Also accepts `Host: NAME` (with the bound port unless NAME has
    /// one): the names clients use for a non-loopback address.
    pub fn allow_host(mut self, name: impl Into<String>) -> Self {
        self.hosts.push(name.into());
        self
    }

    /// Accepts requests from browser pages of `origin`
    /// (`scheme://host[:port]`). None by default: a request with any
    /// `Origin` header is refused.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.push(origin.into());
        self
    }

    /// Caps request bodies at `bytes` ([`DEFAULT_MAX_BODY_BYTES`] by
    /// default).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Caps JSON nesting in request bodies at `depth`
    /// ([`DEFAULT_MAX_JSON_DEPTH`] by default).
    pub fn max_json_depth(mut self, depth: usize) -> Self {
        self.max_json_depth = depth;
        self
    }

    /// Refuses what would leave a server bound at `bound` open: no token
    /// on a non-loopback address, or no token without saying so.
    /// [`McpServer::serve_http`] checks this first; call it before
    /// binding to fail early.
    ///
    /// # Errors
    ///
    /// [`Error::ServeRefused`], with a hint.
    pub fn check(&self, bound: SocketAddr) -> Result<(), Error> {
        if !self.tokens.is_empty() {
            return Ok(());
        }
        if !bound.ip().is_loopback() {
            return Err(Error::ServeRefused {
                message: format!(
                    "refusing to serve MCP over HTTP on `{bound}`, which is not a loopback address, without a bearer token"
                ),
                hint:
                    "set a token (`PORTCULLIS_MCP_TOKEN` or `--token-file FILE`), or bind 127.0.0.1"
                        .into(),
            });
        }
        if !self.without_token {
            return Err(Error::ServeRefused {
                message: "no bearer token is set for MCP over HTTP".into(),
                hint: "set a token (`PORTCULLIS_MCP_TOKEN` or `--token-file FILE`); on a loopback address, `--no-token` serves without one".into(),
            });
        }
        Ok(())
    }
}

/// The token name a request authenticated with, handed to the MCP layer
/// in the request's extensions.
#[derive(Debug, Clone)]
pub(super) struct Authenticated(pub(super) String);

type Body = BoxBody<Bytes, Infallible>;
type Service = StreamableHttpService<Handler, LocalSessionManager>;

/// What every connection shares.
struct Gate {
    options: HttpOptions,
    allowed_hosts: Vec<String>,
    server: McpServer,
    service: Service,
    owners: sessions::Owners,
}

impl McpServer {
    /// Serves MCP over Streamable HTTP on `listener` (at [`MCP_PATH`])
    /// until `stop` is cancelled, then cancels the calls still in flight
    /// and waits until each has ended and been recorded.
    ///
    /// # Errors
    ///
    /// [`Error::ServeRefused`] before serving anything when `options`
    /// admit requests without a token on a non-loopback address, or
    /// without saying so; [`Error::Internal`] when the listener has no
    /// address.
    pub async fn serve_http(
        &self,
        listener: TcpListener,
        options: HttpOptions,
        stop: CancellationToken,
    ) -> Result<(), Error> {
        let bound = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("the HTTP listener has no address: {e}")))?;
        options.check(bound)?;
        let server = self.clone();
        // Our checks come first; rmcp's own Host and Origin lists are
        // left open behind them (ours are the ones tested).
        let config = StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .disable_allowed_origins()
            .with_max_request_body_bytes(options.max_body_bytes)
            .with_cancellation_token(stop.child_token());
        let manager = Arc::new(LocalSessionManager::default());
        let service = StreamableHttpService::new(
            move || {
                Ok(Handler {
                    server: server.clone(),
                    transport: Transport::Http,
                    overflow: None,
                })
            },
            Arc::clone(&manager),
            config,
        );
        let gate = Arc::new(Gate {
            allowed_hosts: guard::allowed_hosts(bound, &options.hosts),
            options,
            server: self.clone(),
            service,
            owners: sessions::Owners::new(manager),
        });
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, say: wait rather than spin.
                        tracing::warn!(error = %e, "accepting an HTTP connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = stop.cancelled() => break,
            };
            // An answer goes out in several small writes (head, then each
            // event of the stream): with Nagle's algorithm on, the second
            // waits for the client's delayed ACK, ~40 ms a call.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY could not be set");
            }
            tokio::spawn(serve_connection(
                Arc::clone(&gate),
                stream,
                peer,
                stop.clone(),
            ));
        }
        self.inner.shutdown.cancel();
        self.inner.in_flight.drained().await;
        Ok(())
    }
}

async fn serve_connection(
    gate: Arc<Gate>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |request| {
        let gate = Arc::clone(&gate);
        async move { Ok::<_, Infallible>(gate.serve(request, peer).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        served = connection => if let Err(e) = served {
            tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
        },
        () = stop.cancelled() => {}
    }
}

impl Gate {
    async fn serve(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let headers = request.headers();
        let get = |name| headers.get(name).map(http::HeaderValue::as_bytes);
        if !guard::host_allowed(&self.allowed_hosts, get(header::HOST)) {
            return self
                .refuse(
                    peer,
                    StatusCode::FORBIDDEN,
                    "the Host header does not name this server",
                )
                .await;
        }
        if !guard::origin_allowed(&self.options.origins, get(header::ORIGIN)) {
            return self
                .refuse(peer, StatusCode::FORBIDDEN, "the Origin is not allowed")
                .await;
        }
        let caller = if self.options.tokens.is_empty() {
            None
        } else {
            match guard::authenticate(&self.options.tokens, get(header::AUTHORIZATION)) {
                Some(name) => Some(name.to_string()),
                None => {
                    return self
                        .refuse(
                            peer,
                            StatusCode::UNAUTHORIZED,
                            "a valid bearer token is required",
                        )
                        .await;
                }
            }
        };
        if request.uri().path() != MCP_PATH {
            return plain(StatusCode::NOT_FOUND, "not found: MCP is served at /mcp");
        }
        let session = headers
            .get(SESSION_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if let Some(session) = &session
            && !self.owners.allows(session, caller.as_deref())
        {
            self.record(
                peer,
                StatusCode::NOT_FOUND,
                "the session was opened with another token",
            )
            .await;
            return plain(StatusCode::NOT_FOUND, "session not found");
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let max = self.options.max_body_bytes;
        if declared.is_some_and(|n| n > max as u64) {
            return self.too_large(peer).await;
        }
        let (mut parts, body) = request.into_parts();
        let read = tokio::time::timeout(READ_TIMEOUT, Limited::new(body, max).collect()).await;
        let bytes = match read {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return self.too_large(peer).await;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, %peer, "reading a request body failed");
                return plain(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                );
            }
            Err(_) => {
                return plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body took too long",
                );
            }
        };
        if guard::too_deep(&bytes, self.options.max_json_depth) {
            let reason = format!(
                "the JSON body nests deeper than {} levels",
                self.options.max_json_depth
            );
            self.record(peer, StatusCode::BAD_REQUEST, &reason).await;
            return json_rpc_error(StatusCode::BAD_REQUEST, &reason);
        }
        if let Some(caller) = &caller {
            parts.extensions.insert(Authenticated(caller.clone()));
        }
        let response = self
            .service
            .handle(Request::from_parts(parts, Full::new(bytes)))
            .await;
        if session.is_none()
            && let Some(opened) = response.headers().get(SESSION_HEADER)
        {
            let opened = String::from_utf8_lossy(opened.as_bytes());
            self.owners.opened(&opened, caller).await;
        }
        response
    }

    async fn too_large(&self, peer: SocketAddr) -> Response<Body> {
        let reason = format!(
            "the request body exceeds {} bytes",
            self.options.max_body_bytes
        );
        self.refuse(peer, StatusCode::PAYLOAD_TOO_LARGE, &reason)
            .await
    }

    /// Records the refusal, then answers it.
    async fn refuse(&self, peer: SocketAddr, status: StatusCode, reason: &str) -> Response<Body> {
        self.record(peer, status, reason).await;
        let mut response = plain(status, reason);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"portcullis\""),
            );
        }
        response
    }

    async fn record(&self, peer: SocketAddr, status: StatusCode, reason: &str) {
        tracing::warn!(%peer, status = status.as_u16(), reason, "HTTP request refused");
        let recorded = self
            .server
            .inner
            .host
            .record(AuditEvent::HttpRefused {
                peer: peer.to_string(),
                status: status.as_u16(),
                reason: reason.to_string(),
            })
            .await;
        if let Err(e) = recorded {
            tracing::error!(error = %e, "recording an HTTP refusal failed");
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_rpc_error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": -32600, "message": message},
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
