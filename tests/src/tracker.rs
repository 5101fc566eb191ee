//! A fake REST issue tracker on loopback, for the `issues` example plugin's
//! tests: it checks `Authorization: Bearer TOKEN` (401 without it), keeps
//! issues in memory and records every request it gets. A careless one
//! (`echo`) sends the credential it received back in every form a leak
//! could take, so the tests can prove the host scrubs them all.

use crate::net::{TestResolver, read_request};
use crate::{ApproveAll, plugin_path, plugin_sha};
use portcullis::manifest::{ApprovalEntry, DestinationEntry, HttpTable, InjectEntry};
use portcullis::{
    Host, HostBuilder, PluginConfig, Secret, SecretConfig, SecretRequest, SecretSource,
};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The tracker's credential: long, and with `+`, `/` and `=`, which every
/// encoding the scrubber knows spells differently.
pub const TOKEN: &str = "trk_9Zx+Q/w=Tr4cker-Secret-0042";

/// The API root on a tracker: the secret is bound to it.
pub const API: &str = "/api/v1";

/// One request as the tracker received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// The `authorization` header, if any.
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

#[derive(Debug, Default)]
struct Store {
    issues: Vec<Value>,
    next_id: u64,
    seen: Vec<Seen>,
    connections: usize,
}

/// A loopback issue tracker. With `echo`, it is a careless one: it echoes
/// the credential it received back in issue bodies (raw, base64, hex),
/// response headers and error messages.
#[derive(Debug)]
pub struct Tracker {
    addr: SocketAddr,
    store: Arc<Mutex<Store>>,
}

impl Tracker {
    /// Starts serving on 127.0.0.1; a careless tracker with `echo`.
    pub async fn start(echo: bool) -> Tracker {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let store = Arc::new(Mutex::new(Store {
            next_id: 1,
            ..Store::default()
        }));
        let shared = store.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.lock().expect("lock").connections += 1;
                tokio::spawn(serve(stream, shared.clone(), echo));
            }
        });
        Tracker { addr, store }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The API root the secret is bound to.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}{API}", self.port())
    }

    /// Every request it received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.store.lock().expect("lock").seen.clone()
    }

    /// Connections so far (a request the host refused makes none).
    pub fn connections(&self) -> usize {
        self.store.lock().expect("lock").connections
    }

    /// The titles of the issues it holds, in order.
    pub fn titles(&self) -> Vec<String> {
        self.store
            .lock()
            .expect("lock")
            .issues
            .iter()
            .map(|i| i["title"].as_str().expect("title").to_string())
            .collect()
    }
}

async fn serve(mut stream: TcpStream, store: Arc<Mutex<Store>>, echo: bool) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let seen = Seen {
        method: request.method.clone(),
        target: request.target.clone(),
        authorization: request.header("authorization").map(str::to_string),
        content_type: request.header("content-type").map(str::to_string),
        body: String::from_utf8_lossy(&request.body).into_owned(),
    };
    let (status, mut extra, body) = {
        let mut store = store.lock().expect("lock");
        store.seen.push(seen.clone());
        handle(&mut store, &seen, echo)
    };
    if echo {
        extra.push(("x-request-id".into(), TOKEN.into()));
        extra.push((
            "x-token-b64".into(),
            base64(format!("user:{TOKEN}").as_bytes(), STANDARD),
        ));
    }
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\ncontent-type: application/json\r\n",
        body.len()
    );
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.shutdown().await;
}

type Answer = (&'static str, Vec<(String, String)>, String);

fn answer(status: &'static str, body: &Value) -> Answer {
    (status, Vec::new(), body.to_string())
}

/// The tracker's API: `GET /api/v1/issues?state=&limit=`, `POST
/// /api/v1/issues`, `DELETE /api/v1/issues/ID`. A title `boom` makes the
/// store fail with a 500.
fn handle(store: &mut Store, seen: &Seen, echo: bool) -> Answer {
    if seen.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        let mut a = answer("401 Unauthorized", &json!({"message": "bad credentials"}));
        a.1.push(("www-authenticate".into(), "Bearer".into()));
        return a;
    }
    let (path, query) = seen.target.split_once('?').unwrap_or((&seen.target, ""));
    let Some(rest) = path.strip_prefix(&format!("{API}/issues")) else {
        return answer("404 Not Found", &json!({"message": "no such route"}));
    };
    let show = |issue: &Value| {
        let mut issue = issue.clone();
        if echo {
            let hex: String = TOKEN.bytes().map(|b| format!("{b:02x}")).collect();
            let body = format!(
                "{}\n\nreported with {}; b64 {}; hex {hex}",
                issue["body"].as_str().unwrap_or(""),
                seen.authorization.as_deref().unwrap_or(""),
                base64(TOKEN.as_bytes(), STANDARD),
            );
            issue["body"] = Value::String(body);
        }
        issue
    };
    match (seen.method.as_str(), rest) {
        ("GET", "") => {
            let param = |name: &str| {
                query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            };
            let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(30);
            let state = param("state");
            let issues: Vec<Value> = store
                .issues
                .iter()
                .filter(|i| state.as_deref().is_none_or(|s| i["state"] == s))
                .take(limit)
                .map(show)
                .collect();
            answer("200 OK", &Value::Array(issues))
        }
        ("POST", "") => {
            let Ok(input) = serde_json::from_str::<Value>(&seen.body) else {
                return answer("400 Bad Request", &json!({"message": "not JSON"}));
            };
            let title = input["title"].as_str().unwrap_or("");
            if title == "boom" {
                return answer(
                    "500 Internal Server Error",
                    &json!({"message": format!(
                        "the store failed for {} ({})",
                        seen.authorization.as_deref().unwrap_or(""),
                        if echo { TOKEN } else { "no echo" },
                    )}),
                );
            }
            let issue = json!({
                "id": store.next_id,
                "title": title,
                "body": input["body"].as_str().unwrap_or(""),
                "state": "open",
                "created_at": "2025-01-01T00:00:00Z",
            });
            store.next_id += 1;
            store.issues.push(issue.clone());
            answer("201 Created", &show(&issue))
        }
        ("DELETE", id) => {
            let id = id.strip_prefix('/').unwrap_or("");
            let before = store.issues.len();
            let wanted = id.parse::<u64>().ok();
            store
                .issues
                .retain(|i| wanted.is_none() || i["id"].as_u64() != wanted);
            if store.issues.len() == before {
                answer(
                    "404 Not Found",
                    &json!({"message": format!("no issue {id}")}),
                )
            } else {
                ("204 No Content", Vec::new(), String::new())
            }
        }
        _ => answer("405 Method Not Allowed", &json!({"message": "no"})),
    }
}

/// The standard base64 alphabet.
pub const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// The URL-safe base64 alphabet.
pub const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `bytes` in base64 with `alphabet`, padded: the careless tracker echoes
/// its credential so, and the tests check that the scrubber catches it.
pub fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

// ---------------------------------------------------------------------------
// The `issues` plugin's host.

/// A vault that hands out one value and remembers who asked.
#[derive(Debug, Clone)]
pub struct Vault {
    value: &'static str,
    asked: Arc<Mutex<Vec<SecretRequest>>>,
}

impl Vault {
    /// A vault handing out `value`.
    pub fn new(value: &'static str) -> Vault {
        Vault {
            value,
            asked: Arc::default(),
        }
    }

    /// The tools the value was handed out for, during calls, as
    /// `plugin.tool`.
    pub fn asked_for(&self) -> Vec<String> {
        self.asked
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|r| {
                let plugin = r.plugin.as_deref()?;
                let tool = r.tool.as_deref()?;
                // `SecretRequest::tool` is documented as `plugin.tool`; the
                // host currently passes the bare tool name. Either way it
                // must name this tool of this plugin.
                let bare = tool.strip_prefix("issues.").unwrap_or(tool);
                Some(format!("{plugin}.{bare}"))
            })
            .collect()
    }
}

impl SecretSource for Vault {
    fn get(&self, request: &SecretRequest) -> Result<Secret, String> {
        self.asked.lock().expect("lock").push(request.clone());
        Ok(Secret::new(self.value))
    }

    fn describe(&self) -> String {
        "the test vault".into()
    }
}

/// The `issues` plugin allowed to reach each of `ports` on loopback with
/// `GET`, `POST` and `DELETE`; secret `tracker` from `vault` bound to
/// `tracker`'s API root only. `list` and `create` run without approval.
pub fn builder(tracker: &Tracker, ports: &[u16], vault: &Vault) -> HostBuilder {
    let secret = SecretConfig::new("tracker", vault.clone())
        .destination(DestinationEntry::Table {
            url: tracker.base_url(),
            methods: None,
            allow_private: true,
        })
        .inject(InjectEntry::header("Authorization", "Bearer {}"));
    let mut plugin = PluginConfig::new("issues", plugin_path("issues"))
        .sha256(plugin_sha("issues"))
        .secret("tracker")
        .approval("list", ApprovalEntry::Never)
        .approval("create", ApprovalEntry::Never);
    for port in ports {
        plugin = plugin.http(
            HttpTable::new(format!("http://127.0.0.1:{port}"))
                .methods(["GET", "POST", "DELETE"])
                .allow_private(true),
        );
    }
    // No name resolves: nothing can leave the machine.
    Host::builder()
        .resolver(TestResolver::default())
        .secret(secret)
        .plugin(plugin)
}

/// The host of [`builder`] for the tracker's own port, approving every
/// call that needs approval.
pub async fn approving(tracker: &Tracker, vault: &Vault) -> Host {
    builder(tracker, &[tracker.port()], vault)
        .approver(ApproveAll)
        .build()
        .await
        .expect("the issues plugin loads")
}
