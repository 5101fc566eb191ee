//! Helpers for Portcullis's integration tests: where the built plugins are,
//! hosts configured the way each test needs, and a filesystem fixture with a
//! sentinel outside every grant.
//!
//! The plugins are built by `plugins/build.sh` (the README's test command
//! runs it first); the tests load the real components from `plugins/dist`.

pub mod tracker;

use portcullis::{
    ApprovalRequest, Approver, Decision, DirMode, Host, Limits, PluginConfig, sha256_hex,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The built component `plugins/dist/NAME.wasm`.
///
/// # Panics
///
/// If it has not been built, with the command that builds it.
pub fn plugin_path(name: &str) -> PathBuf {
    let path = repo_root()
        .join("plugins/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "`{}` is missing: run `plugins/build.sh` first (the README's test command does)",
        path.display()
    );
    path
}

/// The sha256 of a built plugin, as read now.
pub fn plugin_sha(name: &str) -> String {
    sha256_hex(&std::fs::read(plugin_path(name)).expect("plugin is readable"))
}

/// A temporary tree for filesystem tests:
///
/// ```text
/// root/
///   ro/        granted read-only at /ro:  notes.txt, link-out -> ../outside/secret.txt
///   rw/        granted read-write at /rw: scratch.txt
///   outside/   granted to nobody:         secret.txt (the sentinel)
/// ```
#[derive(Debug)]
pub struct Fixture {
    dir: tempfile::TempDir,
    snapshot: BTreeMap<PathBuf, Snapshot>,
}

/// What a path outside the grants looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Snapshot {
    File(Vec<u8>),
    Dir,
    Link(PathBuf),
}

/// Contents of the sentinel file outside every grant.
pub const SECRET: &str = "sentinel: the plugin must never read or change this";

impl Fixture {
    /// Creates the tree and records the state of everything outside the
    /// grants.
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        for sub in ["ro", "rw", "outside"] {
            std::fs::create_dir(root.join(sub)).expect("mkdir");
        }
        std::fs::write(root.join("ro/notes.txt"), "read-only notes\n").expect("write");
        std::fs::write(root.join("rw/scratch.txt"), "scratch\n").expect("write");
        std::fs::write(root.join("outside/secret.txt"), SECRET).expect("write");
        std::fs::write(root.join("top-level.txt"), SECRET).expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink("../outside/secret.txt", root.join("ro/link-out"))
            .expect("symlink");
        let mut fixture = Fixture {
            dir,
            snapshot: BTreeMap::new(),
        };
        fixture.snapshot = fixture.outside_state();
        fixture
    }

    /// The fixture's root folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the fixture.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Everything in the fixture outside `ro/` and `rw/`, plus the read-only
    /// grant itself (which no call may change).
    fn outside_state(&self) -> BTreeMap<PathBuf, Snapshot> {
        let mut state = BTreeMap::new();
        walk(self.root(), self.root(), &mut state);
        state
            .into_iter()
            .filter(|(rel, _)| !rel.starts_with("rw"))
            .collect()
    }

    /// Panics if anything outside the read-write grant changed: the
    /// sentinel, the top-level files, and the read-only grant.
    pub fn assert_outside_unchanged(&self) {
        let now = self.outside_state();
        assert_eq!(
            now, self.snapshot,
            "something outside the read-write grant was changed"
        );
    }

    /// A host running the `hostile` plugin with `ro/` at `/ro` (read-only)
    /// and `rw/` at `/rw` (read-write). The read-write grant makes every
    /// tool `write`, which needs approval: these hosts approve everything
    /// ([`ApproveAll`]), so the tests reach the sandbox.
    pub async fn hostile(&self, limits: Limits) -> Host {
        Host::builder()
            .approver(ApproveAll)
            .plugin(
                PluginConfig::new("hostile", plugin_path("hostile"))
                    .sha256(plugin_sha("hostile"))
                    .dir(self.path("ro"), "/ro", DirMode::ReadOnly)
                    .dir(self.path("rw"), "/rw", DirMode::ReadWrite)
                    .limits(limits),
            )
            .build()
            .await
            .expect("the hostile plugin loads")
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Snapshot>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(root).expect("inside root").to_path_buf();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap_or_default();
            out.insert(rel, Snapshot::Link(target));
        } else if meta.is_dir() {
            out.insert(rel, Snapshot::Dir);
            walk(root, &path, out);
        } else {
            out.insert(
                rel,
                Snapshot::File(std::fs::read(&path).unwrap_or_default()),
            );
        }
    }
}

/// Approves every request (test hosts only).
#[derive(Debug, Clone, Copy)]
pub struct ApproveAll;

impl Approver for ApproveAll {
    fn decide(&self, request: &ApprovalRequest) -> Decision {
        request.approve_by("test")
    }
}

/// A host running the `refunds` example plugin (no grants) with
/// `refund` asking for approval when `/amount > 100`.
pub fn refunds() -> PluginConfig {
    PluginConfig::new("refunds", plugin_path("refunds"))
        .sha256(plugin_sha("refunds"))
        .approval(
            "refund",
            portcullis::manifest::ApprovalEntry::rules(["/amount > 100"]),
        )
}

/// The records of a JSON Lines audit file, parsed.
pub fn audit_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("audit log is readable")
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is one JSON record"))
        .collect()
}

/// The `event` names of the records, in order.
pub fn events(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["event"].as_str().expect("event").to_string())
        .collect()
}

/// Calls `tool` (`plugin.tool`) with `args` and returns the output value.
pub async fn call_value(
    host: &portcullis::Host,
    tool: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, portcullis::Error> {
    host.call(tool, &args.to_string(), &portcullis::CallContext::new())
        .await
        .map(|out| out.value)
}

/// The error a tool itself reported.
///
/// # Panics
///
/// If the result is anything else.
pub fn tool_error(result: Result<serde_json::Value, portcullis::Error>) -> portcullis::ToolError {
    match result {
        Err(portcullis::Error::Tool { error, .. }) => error,
        other => panic!("expected a tool error, got {other:?}"),
    }
}

/// Default limits with some fields changed, for tests that need a limit to
/// trip quickly.
pub fn limits(change: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    change(&mut limits);
    limits
}

/// Egress fixtures: a loopback server the tests allow, a loopback canary
/// that must never be connected to, and a resolver that maps test names to
/// them.
/// Every form of `token` a leak could take, computed independently of the
/// host's scrubber: raw; hex in both cases; percent-encoded (upper case);
/// and, for base64 and base64url at each of the three alignments, the
/// characters that encode only the token's bytes, so the token inside a
/// longer encoded stream (`base64("user:" + token)`) is caught too.
pub fn secret_forms(token: &str) -> Vec<Vec<u8>> {
    const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = token.as_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let percent: String = bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut forms = vec![
        bytes.to_vec(),
        hex.to_uppercase().into_bytes(),
        hex.into_bytes(),
        percent.into_bytes(),
    ];
    for alphabet in [STANDARD, URL_SAFE] {
        for k in 0..3 {
            let mut prefixed = vec![b'x'; k];
            prefixed.extend_from_slice(bytes);
            let mut encoded = Vec::new();
            for chunk in prefixed.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
                for i in 0..=chunk.len() {
                    encoded.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize]);
                }
            }
            let start = (8 * k).div_ceil(6);
            let end = (8 * (k + bytes.len())) / 6;
            forms.push(encoded[start..end].to_vec());
        }
    }
    forms
}

/// Asserts that no form of `token` ([`secret_forms`]) occurs in `haystack`.
pub fn assert_no_secret(what: &str, haystack: &[u8], token: &str) {
    for form in secret_forms(token) {
        assert!(
            !haystack.windows(form.len()).any(|w| w == form.as_slice()),
            "{what} holds the secret as `{}`",
            String::from_utf8_lossy(&form)
        );
    }
}

pub mod net {
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
    /// - `/redirect?to=URL`: a 302 to `URL`.
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
    pub async fn read_request(
        stream: &mut (impl tokio::io::AsyncRead + Unpin),
    ) -> Option<ReadRequest> {
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
        let Some(ReadRequest {
            head,
            method,
            target,
            headers,
            body,
        }) = read_request(&mut stream).await
        else {
            return;
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
                        return;
                    }
                }
                return;
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
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                return;
            }
            "/redirect" => {
                let to = query.strip_prefix("to=").unwrap_or("/hello");
                respond("302 Found", &format!("location: {to}\r\n"), b"")
            }
            _ => respond("404 Not Found", "", b"not found"),
        };
        let _ = stream.write_all(&response).await;
        let _ = stream.shutdown().await;
    }
}
