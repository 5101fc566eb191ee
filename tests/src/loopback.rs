//! Loopback test servers and the resolver that points test names at them:
//! the allowed server (with routes for every egress case), a canary that
//! counts connections and never answers, and the HTTP/1.1 request reader
//! the other test servers (TLS, the fake tracker) share. Nothing here can
//! reach off the machine: the resolver answers only loopback or blocked
//! addresses. [`crate::net::Net`] puts them together for one test.

use portcullis::{ResolveFuture, Resolver};
use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Resolves only the names it was given. It answers loopback
/// addresses (the test servers) or addresses in blocked ranges (which
/// the gate must refuse before connecting), so no test can reach
/// anything off this machine.
#[derive(Debug, Clone, Default)]
pub struct TestResolver {
    names: HashMap<String, Vec<IpAddr>>,
}

impl TestResolver {
    /// Maps `name` to `ips`.
    ///
    /// # Panics
    ///
    /// If an address is public: the harness refuses any non-loopback
    /// connection, and only blocked addresses can never be connected to.
    pub fn map(mut self, name: &str, ips: &[&str]) -> Self {
        let ips: Vec<IpAddr> = ips.iter().map(|ip| ip.parse().expect("an IP")).collect();
        for ip in &ips {
            assert!(
                ip.is_loopback() || ip.is_unspecified() || is_private(ip),
                "test names must resolve to loopback or blocked addresses, not {ip}"
            );
        }
        self.names.insert(name.to_string(), ips);
        self
    }
}

fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

impl Resolver for TestResolver {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> ResolveFuture<'a> {
        let answer = self.names.get(host).cloned().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("`{host}` is not a test name"),
            )
        });
        Box::pin(std::future::ready(answer))
    }
}

/// A loopback listener that counts connections and never answers: any
/// connection is a test failure.
#[derive(Debug)]
pub struct Canary {
    /// Its address.
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Canary {
    /// Starts listening on 127.0.0.1.
    pub async fn start() -> Canary {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Canary { addr, hits }
    }

    /// Connections so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Panics if anything connected.
    pub fn assert_untouched(&self) {
        assert_eq!(self.hits(), 0, "the canary server was connected to");
    }
}

/// The allowed loopback server. Routes:
///
/// - `/hello`: `hello from allowed`;
/// - `/page`: an HTML page with a title (and a second one in the body), a
///   heading, a link and a script;
/// - `/echo`: the request as JSON (method, path, headers, body);
/// - `/big`: 2 MiB with a `content-length`; `/big-chunked`: 2 MiB
///   without one;
/// - `/bomb`: 16 MiB of zeros, gzip-compressed to a few KiB;
/// - `/drip`: 1000 bytes announced, one sent every 100 ms;
/// - `/redirect?to=URL`: a 302 to `URL`;
/// - `/cookie`: `hello` with a `set-cookie` header;
/// - `/te-gzip`: `hello`, framed `transfer-encoding: gzip, chunked`;
/// - `/keep`: `kept`, keeping the connection open for the next request
///   (every other route closes it).
#[derive(Debug)]
pub struct Allowed {
    /// Its address.
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Allowed {
    /// Starts serving on 127.0.0.1.
    pub async fn start() -> Allowed {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let counter = hits.clone();
        let recorded = heads.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, recorded.clone()));
            }
        });
        Allowed { addr, hits, heads }
    }

    /// The request line and headers of every request received, as sent.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Connections so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// One HTTP/1.1 request as a test server read it.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    /// The request line and headers, as sent.
    pub head: String,
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// As many bytes as `content-length` said (or the peer sent).
    pub body: Vec<u8>,
}

impl ReadRequest {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request (head, then a `content-length` body) from
/// `stream`; `None` if the peer closed first.
pub async fn read_request(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<ReadRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut request = ReadRequest {
        head,
        method,
        target,
        headers,
        body: buf[head_end..].to_vec(),
    };
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while request.body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => request.body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(request)
}

async fn serve(mut stream: TcpStream, heads: Arc<std::sync::Mutex<Vec<String>>>) {
    while serve_one(&mut stream, &heads).await {}
    let _ = stream.shutdown().await;
}

/// Answers one request on `stream`; whether the connection stays open.
async fn serve_one(stream: &mut TcpStream, heads: &std::sync::Mutex<Vec<String>>) -> bool {
    let Some(ReadRequest {
        head,
        method,
        target,
        headers,
        body,
    }) = read_request(stream).await
    else {
        return false;
    };
    heads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(head.clone());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let respond = |status: &str, extra: &str, body: &[u8]| {
        let mut out = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    };
    let response = match path {
        "/hello" => respond("200 OK", "content-type: text/plain\r\n", b"hello from allowed"),
        "/page" => respond(
            "200 OK",
            "content-type: text/html; charset=utf-8\r\n",
            b"<!doctype html><html><head><title>Test &amp; page</title><script>var x = 1;</script></head><body><h1>Welcome</h1><p>Some <b>bold</b> text &lt;here&gt;.</p><ul><li>one</li><li><a href=\"/hello\">two</a></li></ul><div><title>an icon</title></div></body></html>",
        ),
        "/echo" => {
            let json = serde_json::json!({
                "method": method,
                "path": target,
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            });
            respond("200 OK", "content-type: application/json\r\n", json.to_string().as_bytes())
        }
        "/big" => respond("200 OK", "", &vec![b'x'; 2 << 20]),
        "/big-chunked" => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
                .await;
            let block = vec![b'x'; 64 << 10];
            for _ in 0..32 {
                if stream.write_all(&block).await.is_err() {
                    return false;
                }
            }
            return false;
        }
        "/bomb" => {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(&vec![0u8; 16 << 20]).expect("compress");
            let gz = enc.finish().expect("compress");
            respond("200 OK", "content-encoding: gzip\r\n", &gz)
        }
        "/drip" => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n")
                .await;
            for _ in 0..1000 {
                if stream.write_all(b"x").await.is_err() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return false;
        }
        "/redirect" => {
            let to = query.strip_prefix("to=").unwrap_or("/hello");
            respond("302 Found", &format!("location: {to}\r\n"), b"")
        }
        "/cookie" => respond("200 OK", "set-cookie: session=abc123; HttpOnly\r\n", b"hello"),
        "/te-gzip" => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(b"hello").expect("compress");
            let gz = enc.finish().expect("compress");
            let mut out = format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\n{:x}\r\n",
                gz.len()
            )
            .into_bytes();
            out.extend_from_slice(&gz);
            out.extend_from_slice(b"\r\n0\r\n\r\n");
            out
        }
        "/keep" => {
            let kept = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nkept";
            return stream.write_all(kept).await.is_ok();
        }
        _ => respond("404 Not Found", "", b"not found"),
    };
    let _ = stream.write_all(&response).await;
    false
}
