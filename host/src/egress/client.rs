//! The HTTP/1.1 client the gate drives: it connects to exactly the socket
//! address the gate checked (no second lookup, no proxy), speaks TLS that
//! verifies the original host name, and reads the response body under a
//! byte cap while it streams, decompressing under the same cap.
//!
//! Connections are kept alive for the rest of the call in its [`Pool`],
//! keyed by the checked destination they were opened to (the address
//! connected, with its port, and the TLS name verified): a request reuses
//! one only when that address is among its own checked addresses and the
//! TLS name is the same, after the gate's checks ran for it. They end with
//! the call.

use crate::policy::allowlist::Target;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// Biggest response head (status line and headers) accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A request the gate has checked.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: http::Method,
    pub(crate) target: &'a Target,
    /// Path and query, as parsed.
    pub(crate) path_and_query: String,
    /// Every address the gate checked, tried in turn.
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub(crate) body: Vec<u8>,
}

/// What came back.
pub(crate) struct Incoming {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// Why a request that was allowed did not complete.
#[derive(Debug)]
pub(crate) enum ClientError {
    Timeout(String),
    TooLarge(String),
    Upstream(String),
}

/// How long and how much.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) connect_timeout: Duration,
    pub(crate) deadline: Instant,
    pub(crate) max_response: u64,
}

/// Whom the client trusts for HTTPS: the Mozilla roots, plus any CA the
/// embedder added (a private CA). Cheap to clone.
#[derive(Clone)]
pub(crate) struct Tls(Arc<rustls::ClientConfig>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// The Mozilla roots and `extra`, each a DER certificate.
    ///
    /// # Errors
    ///
    /// A certificate that is not a valid trust anchor.
    pub(crate) fn new(extra: &[Vec<u8>]) -> Result<Tls, String> {
        if extra.is_empty() {
            return Ok(Tls::mozilla());
        }
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for (i, der) in extra.iter().enumerate() {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| format!("certificate {} is not a usable root: {e}", i + 1))?;
        }
        Ok(Tls(config(roots)))
    }

    /// The Mozilla roots only (built once).
    pub(crate) fn mozilla() -> Tls {
        static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
        Tls(CONFIG
            .get_or_init(|| {
                config(rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                })
            })
            .clone())
    }
}

fn config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| {
        b.with_root_certificates(roots.clone())
            .with_no_client_auth()
    })
    .unwrap_or_else(|_| {
        // The ring provider supports the safe defaults; this branch
        // only exists to avoid a panic path.
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth()
    });
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Most kept-alive connections one call holds.
const MAX_IDLE: usize = 4;

/// The checked destination a connection was opened to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    /// The address (and port) connected to: one the gate checked.
    addr: SocketAddr,
    /// The name the server's certificate was verified for; `None` for
    /// plain HTTP.
    tls_name: Option<String>,
}

/// One HTTP/1.1 connection: its sender, and the task driving it (aborted
/// when the connection is dropped).
struct Conn {
    key: Key,
    sender: SendRequest<Full<Bytes>>,
    _driver: AbortOnDrop<hyper::Result<()>>,
}

/// The kept-alive connections of one call (see the module docs).
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    /// An idle connection to one of `addrs` (in the resolver's order, as a
    /// new connection would try them) verified for `tls_name`.
    fn take(&self, addrs: &[SocketAddr], tls_name: Option<&str>) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        addrs.iter().find_map(|addr| {
            let i = idle
                .iter()
                .position(|c| c.key.addr == *addr && c.key.tls_name.as_deref() == tls_name)?;
            Some(idle.swap_remove(i))
        })
    }

    /// Like [`take`](Self::take), skipping connections the server closed.
    async fn checkout(&self, addrs: &[SocketAddr], tls_name: Option<&str>) -> Option<Conn> {
        while let Some(mut conn) = self.take(addrs, tls_name) {
            if conn.sender.ready().await.is_ok() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for the call's next request, unless it is closing.
    fn put(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(conn);
    }

    /// Closes every kept connection: the call is over.
    pub(crate) fn clear(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Sends `out` and reads the whole response within `bounds`, on a
/// kept-alive connection of `pool` to one of the checked addresses if there
/// is one, else on a new one.
pub(crate) async fn send(
    out: Outgoing<'_>,
    bounds: Bounds,
    tls: &Tls,
    pool: &Pool,
) -> Result<Incoming, ClientError> {
    let connect_by = bounds.deadline.min(Instant::now() + bounds.connect_timeout);
    let tls_name = (out.target.scheme == "https").then(|| {
        out.target
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    });
    let tls_name = tls_name.as_deref();
    let upstream =
        |e: hyper::Error| ClientError::Upstream(format!("`{}`: {e}", out.target.origin()));
    let work = async {
        let (mut conn, reused) = match pool.checkout(&out.addrs, tls_name).await {
            Some(conn) => (conn, true),
            None => (open(&out, connect_by, tls, tls_name).await?, false),
        };
        let response = match conn.sender.try_send_request(request(&out)?).await {
            Ok(response) => response,
            // A kept connection the server closed before the request left:
            // the same request, unsent, on a new one.
            Err(mut e) if reused => match e.take_message() {
                Some(request) => {
                    conn = open(&out, connect_by, tls, tls_name).await?;
                    conn.sender.send_request(request).await.map_err(upstream)?
                }
                None => return Err(upstream(e.into_error())),
            },
            Err(e) => return Err(upstream(e.into_error())),
        };
        let incoming = read(response, &out, bounds.max_response).await?;
        // Read to its end: the connection may carry the call's next request.
        pool.put(conn);
        Ok(incoming)
    };
    match tokio::time::timeout_at(bounds.deadline, work).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout(format!(
            "`{}` did not answer completely before the deadline",
            out.target.origin()
        ))),
    }
}

/// A new connection to the first checked address that accepts one, with
/// TLS verifying `tls_name` when there is one.
async fn open(
    out: &Outgoing<'_>,
    connect_by: Instant,
    tls: &Tls,
    tls_name: Option<&str>,
) -> Result<Conn, ClientError> {
    let (tcp, addr) = connect(out, connect_by).await?;
    let _ = tcp.set_nodelay(true);
    let (sender, driver) = match tls_name {
        Some(name) => {
            let server_name = ServerName::try_from(name.to_string())
                .map_err(|e| ClientError::Upstream(format!("invalid TLS name `{name}`: {e}")))?;
            let stream = TlsConnector::from(Arc::clone(&tls.0))
                .connect(server_name, tcp)
                .await
                .map_err(|e| ClientError::Upstream(format!("TLS with `{name}` failed: {e}")))?;
            handshake(stream, out).await?
        }
        None => handshake(tcp, out).await?,
    };
    Ok(Conn {
        key: Key {
            addr,
            tls_name: tls_name.map(str::to_string),
        },
        sender,
        _driver: driver,
    })
}

async fn handshake<IO>(
    io: IO,
    out: &Outgoing<'_>,
) -> Result<(SendRequest<Full<Bytes>>, AbortOnDrop<hyper::Result<()>>), ClientError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_RESPONSE_HEAD)
        .handshake::<_, Full<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| ClientError::Upstream(format!("`{}`: {e}", out.target.origin())))?;
    // The connection task dies with its connection: when the request
    // fails, or when the call's pool is cleared, so nothing outlives the
    // call.
    Ok((sender, AbortOnDrop(tokio::spawn(conn))))
}

/// The first of the checked addresses that accepts a connection by
/// `connect_by`, tried in the resolver's order (a name whose first address
/// is `::1` still reaches a server on `127.0.0.1`), and that address.
async fn connect(
    out: &Outgoing<'_>,
    connect_by: Instant,
) -> Result<(TcpStream, SocketAddr), ClientError> {
    let mut failures = Vec::new();
    for addr in &out.addrs {
        match tokio::time::timeout_at(connect_by, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(ClientError::Timeout(format!(
                    "connecting to `{}` ({addr}) took too long",
                    out.target.origin(),
                )));
            }
            Ok(Err(e)) => failures.push(format!("{addr}: {e}")),
            Ok(Ok(tcp)) => return Ok((tcp, *addr)),
        }
    }
    Err(ClientError::Upstream(format!(
        "cannot connect to `{}` ({})",
        out.target.origin(),
        failures.join("; ")
    )))
}

/// Bodies past this size are decoded and scrubbed on a blocking thread,
/// not on the async threads that drive every other call.
pub(crate) const BLOCKING_THRESHOLD: usize = 64 * 1024;

/// Runs `work` on the blocking pool when `len` is past
/// [`BLOCKING_THRESHOLD`], inline otherwise.
///
/// # Errors
///
/// The blocking task panicked or was cancelled.
pub(crate) async fn off_the_runtime<T: Send + 'static>(
    len: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    if len <= BLOCKING_THRESHOLD {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("processing the response failed: {e}"))
}

/// The request as it goes on the wire.
fn request(out: &Outgoing<'_>) -> Result<http::Request<Full<Bytes>>, ClientError> {
    let default_port = if out.target.scheme == "https" {
        443
    } else {
        80
    };
    let host_header = if out.target.port == default_port {
        out.target.host.clone()
    } else {
        format!("{}:{}", out.target.host, out.target.port)
    };
    let mut builder = http::Request::builder()
        .method(out.method.clone())
        .uri(out.path_and_query.as_str())
        .header(http::header::HOST, host_header)
        .header(http::header::ACCEPT_ENCODING, "gzip, deflate");
    for (name, value) in &out.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::from(out.body.clone())))
        .map_err(|e| ClientError::Upstream(format!("cannot build the request: {e}")))
}

/// The whole response, its body read under `max` and decoded.
async fn read(
    response: http::Response<hyper::body::Incoming>,
    out: &Outgoing<'_>,
    max: u64,
) -> Result<Incoming, ClientError> {
    let upstream =
        |e: hyper::Error| ClientError::Upstream(format!("`{}`: {e}", out.target.origin()));
    let status = response.status().as_u16();
    let mut headers = Vec::new();
    let mut encoding = String::from("identity");
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::CONTENT_ENCODING {
            encoding = value.trim().to_ascii_lowercase();
            continue;
        }
        // Only `chunked` framing is understood: `gzip, chunked` would hand
        // on a compressed body that no scrubber reads.
        if name == http::header::TRANSFER_ENCODING && !value.trim().eq_ignore_ascii_case("chunked")
        {
            return Err(ClientError::Upstream(format!(
                "`{}` answered with transfer-coding `{}`; only `chunked` is accepted",
                out.target.origin(),
                crate::text::cut(&value, 64).0.escape_debug()
            )));
        }
        if name == http::header::CONTENT_LENGTH {
            if value.trim().parse::<u64>().is_ok_and(|n| n > max) {
                return Err(too_large(out, max));
            }
            continue;
        }
        // The body handed on is whole and decoded: framing and
        // connection headers describe this hop only.
        if matches!(
            name.as_str(),
            "transfer-encoding" | "connection" | "keep-alive" | "trailer" | "upgrade"
        ) {
            continue;
        }
        headers.push((name.as_str().to_string(), value));
    }
    let mut body = response.into_body();
    let mut raw: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(upstream)?;
        if let Ok(data) = frame.into_data() {
            if raw.len() as u64 + data.len() as u64 > max {
                return Err(too_large(out, max));
            }
            raw.extend_from_slice(&data);
        }
    }
    // Decompressing costs what the output does, up to `max`, whatever the
    // input's size: any encoded body is decoded off the runtime.
    let work = if matches!(encoding.as_str(), "" | "identity") {
        0
    } else {
        usize::MAX
    };
    let body = off_the_runtime(work, move || decode(&encoding, raw, max))
        .await
        .map_err(ClientError::Upstream)?;
    let body = body.map_err(|e| match e {
        Decode::TooLarge => ClientError::TooLarge(format!(
            "the response from `{}` decompresses to more than {max} bytes",
            out.target.origin()
        )),
        Decode::Bad(why) => ClientError::Upstream(format!("`{}`: {why}", out.target.origin())),
    })?;
    Ok(Incoming {
        status,
        headers,
        body,
    })
}

fn too_large(out: &Outgoing<'_>, max: u64) -> ClientError {
    ClientError::TooLarge(format!(
        "the response from `{}` is larger than {max} bytes",
        out.target.origin()
    ))
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
pub(crate) enum Decode {
    TooLarge,
    Bad(String),
}

/// Decodes a body under `max` output bytes: a decompression bomb stops
/// after `max + 1` bytes of output, whatever its ratio.
pub(crate) fn decode(encoding: &str, raw: Vec<u8>, max: u64) -> Result<Vec<u8>, Decode> {
    let reader: Box<dyn Read> = match encoding {
        "" | "identity" => return Ok(raw),
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(std::io::Cursor::new(raw))),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(std::io::Cursor::new(raw))),
        other => {
            return Err(Decode::Bad(format!(
                "unsupported content-encoding `{}`",
                other.escape_debug()
            )));
        }
    };
    let mut out = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Decode::Bad(format!("cannot decode the {encoding} body: {e}")))?;
    if out.len() as u64 > max {
        return Err(Decode::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{Conn, Decode, Key, Pool, decode};
    use std::io::Write;
    use std::net::SocketAddr;

    /// A live connection to a loopback listener, filed under `addr` and
    /// `tls_name` (whatever it really reached).
    async fn conn(addr: SocketAddr, tls_name: Option<&str>) -> Conn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (sender, driver) = hyper::client::conn::http1::Builder::new()
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("handshake");
        Conn {
            key: Key {
                addr,
                tls_name: tls_name.map(str::to_string),
            },
            sender,
            _driver: super::AbortOnDrop(tokio::spawn(driver)),
        }
    }

    #[tokio::test]
    async fn kept_connections_serve_only_their_checked_address_and_tls_name() {
        let a: SocketAddr = "127.0.0.1:443".parse().expect("addr");
        let b: SocketAddr = "127.0.0.2:443".parse().expect("addr");
        let other_port: SocketAddr = "127.0.0.1:8443".parse().expect("addr");
        let pool = Pool::default();
        pool.put(conn(a, Some("api.example.com")).await);
        assert!(pool.take(&[b], Some("api.example.com")).is_none());
        assert!(pool.take(&[other_port], Some("api.example.com")).is_none());
        assert!(pool.take(&[a], Some("evil.example.com")).is_none());
        assert!(pool.take(&[a], None).is_none());
        let taken = pool.take(&[b, a], Some("api.example.com")).expect("kept");
        assert_eq!(taken.key.addr, a);
        assert!(
            pool.take(&[a], Some("api.example.com")).is_none(),
            "taken once"
        );
        pool.put(taken);
        pool.clear();
        assert!(pool.take(&[a], Some("api.example.com")).is_none());
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).expect("compress");
        enc.finish().expect("compress")
    }

    #[test]
    fn gzip_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 16 << 20]);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        assert!(matches!(
            decode("gzip", bomb, 1 << 20),
            Err(Decode::TooLarge)
        ));
    }

    #[test]
    fn small_gzip_and_identity_bodies_decode() {
        assert_eq!(decode("gzip", gzip(b"hello"), 5).expect("fits"), b"hello");
        assert_eq!(decode("identity", b"x".to_vec(), 5).expect("fits"), b"x");
        assert!(matches!(
            decode("br", b"x".to_vec(), 5),
            Err(Decode::Bad(_))
        ));
    }
}
