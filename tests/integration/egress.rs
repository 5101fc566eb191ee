//! One egress gate for every outbound request: the allowlist, the SSRF
//! defence, redirects, limits and the audit trail, driven through the
//! test-only `egress` plugin (and the `fetch` example) against a loopback
//! server the tests allow and a loopback canary that must never see a
//! connection. The harness's resolver only answers loopback or blocked
//! addresses, so nothing can leave the machine.

use portcullis::manifest::{HttpEntry, HttpTable};
use portcullis::{AuditSink, CallContext, Effect, Error, Host, Limits, PluginConfig};
use portcullis_tests::net::{Allowed, Canary, TestResolver};
use portcullis_tests::{ApproveAll, limits, plugin_path, plugin_sha};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The servers of one test, and the plugin that reaches for them: `egress`
/// (through `portcullis:tool/http`) or `wasihttp` (through `wasi:http`,
/// see `wasi_http.rs`).
pub(crate) struct Net {
    pub(crate) allowed: Allowed,
    canary: Canary,
    /// Audit records of the hosts built here (unless a test sets its own
    /// sink).
    pub(crate) audit: Memory,
    plugin: &'static str,
}

impl Net {
    async fn start() -> Net {
        Net::start_for("egress").await
    }

    pub(crate) async fn start_for(plugin: &'static str) -> Net {
        Net {
            allowed: Allowed::start().await,
            canary: Canary::start().await,
            audit: Memory::default(),
            plugin,
        }
    }

    /// The audit records so far.
    pub(crate) fn records(&self) -> Vec<String> {
        self.audit.0.lock().expect("lock").clone()
    }

    pub(crate) fn a(&self) -> u16 {
        self.allowed.port()
    }

    /// `path` on the allowed server, by name.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://allowed.test:{}{path}", self.a())
    }

    /// Has this test's plugin send `requests`; every outcome.
    pub(crate) async fn send(&self, host: &Host, requests: Value) -> Vec<Value> {
        let output = host
            .call(
                &format!("{}.send", self.plugin),
                &json!({ "requests": requests }).to_string(),
                &CallContext::new(),
            )
            .await
            .expect("the call completes");
        output.value.as_array().expect("a list of outcomes").clone()
    }

    /// Has this test's plugin send one request; its outcome.
    pub(crate) async fn one(&self, host: &Host, request: Value) -> Value {
        self.send(host, json!([request])).await.remove(0)
    }

    pub(crate) fn c(&self) -> u16 {
        self.canary.addr.port()
    }

    /// `allowed.test` and every other test name on loopback (the canary
    /// and allowed servers are told apart by port), `internal.test` on a
    /// private address, `metadata.test` on the cloud metadata address.
    fn resolver(&self) -> TestResolver {
        TestResolver::default()
            .map("allowed.test", &["127.0.0.1"])
            .map("canary.test", &["127.0.0.1"])
            .map("rebind.test", &["127.0.0.1"])
            .map("internal.test", &["10.0.0.7"])
            .map("metadata.test", &["169.254.169.254"])
            .map("six.test", &["::1"])
            .map("api.allowed.test", &["127.0.0.1"])
            .map("allowed.test.canary.test", &["127.0.0.1"])
            .map("evilallowed.test", &["127.0.0.1"])
    }

    /// The allowed server's entry (it is on loopback, so it needs the
    /// explicit opt-in).
    pub(crate) fn allowed_entry(&self) -> HttpEntry {
        HttpTable::new(format!("http://allowed.test:{}", self.a()))
            .allow_private(true)
            .into()
    }

    pub(crate) async fn host(&self, entries: Vec<HttpEntry>, limits: Limits) -> Host {
        self.host_with(entries, limits, |b| b).await
    }

    pub(crate) async fn host_with(
        &self,
        entries: Vec<HttpEntry>,
        limits: Limits,
        extra: impl FnOnce(portcullis::HostBuilder) -> portcullis::HostBuilder,
    ) -> Host {
        let mut plugin = PluginConfig::new(self.plugin, plugin_path(self.plugin))
            .sha256(plugin_sha(self.plugin))
            .limits(limits);
        for entry in entries {
            plugin = plugin.http(entry);
        }
        let builder = Host::builder()
            .resolver(self.resolver())
            .approver(ApproveAll)
            .max_denials(100)
            .audit(self.audit.clone())
            .plugin(plugin);
        extra(builder)
            .build()
            .await
            .expect("the egress plugin loads")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.canary.assert_untouched();
        }
    }
}

fn assert_error(outcome: &Value, kind: &str, text: &str) {
    assert_eq!(outcome["error"], kind, "{outcome}");
    let message = outcome["message"].as_str().unwrap_or_default();
    assert!(message.contains(text), "`{text}` not in: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_host_is_reached() {
    let net = Net::start().await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let out = net.one(&host, json!({"url": net.url("/hello")})).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"], "hello from allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_host_is_denied() {
    let net = Net::start().await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let out = net
        .one(
            &host,
            json!({"url": format!("http://canary.test:{}/", net.c())}),
        )
        .await;
    assert_error(
        &out,
        "denied",
        "host `canary.test` is not in this plugin's allowlist",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_port_is_denied() {
    let net = Net::start().await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let out = net
        .one(
            &host,
            json!({"url": format!("http://allowed.test:{}/hello", net.c())}),
        )
        .await;
    assert_error(&out, "denied", "is not in this plugin's allowlist");
    let out = net
        .one(&host, json!({"url": "http://allowed.test/hello"}))
        .await;
    assert_error(&out, "denied", "`http://allowed.test:80`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_scheme_is_denied() {
    let net = Net::start().await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let out = net
        .one(
            &host,
            json!({"url": format!("https://allowed.test:{}/hello", net.a())}),
        )
        .await;
    assert_error(&out, "denied", "`https://allowed.test:");
    for url in [
        "ftp://allowed.test/",
        "file:///etc/passwd",
        "gopher://allowed.test/",
    ] {
        let out = net.one(&host, json!({ "url": url })).await;
        assert_error(&out, "denied", "is not allowed: use http or https");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_and_path_are_denied() {
    let net = Net::start().await;
    let entry = HttpTable::new(net.url("/hello")).allow_private(true).into();
    let host = net.host(vec![entry], Limits::default()).await;
    let base = net.url("");
    let out = net
        .one(&host, json!({"url": format!("{base}/hello")}))
        .await;
    assert_eq!(out["status"], 200, "{out}");
    let out = net
        .one(
            &host,
            json!({"method": "POST", "url": format!("{base}/hello")}),
        )
        .await;
    assert_error(&out, "denied", "method `POST` is not allowed");
    let out = net
        .one(
            &host,
            json!({"method": "DELETE", "url": format!("{base}/hello")}),
        )
        .await;
    assert_error(&out, "denied", "method `DELETE`");
    for path in ["/echo", "/hello2", "/hello/../echo", "/hello/%2e%2e/echo"] {
        let out = net
            .one(&host, json!({"url": format!("{base}{path}")}))
            .await;
        assert_error(&out, "denied", "outside the allowed prefixes `/hello`");
    }
    assert_eq!(net.allowed.hits(), 1, "only the allowed request connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suffix_confusion_is_denied() {
    let net = Net::start().await;
    let entry = HttpTable::new(format!("http://*.allowed.test:{}", net.c()))
        .allow_private(true)
        .into();
    let host = net.host(vec![entry], Limits::default()).await;
    for name in [
        "allowed.test.canary.test",
        "evilallowed.test",
        "allowed.test",
    ] {
        let out = net
            .one(&host, json!({"url": format!("http://{name}:{}/", net.c())}))
            .await;
        assert_error(&out, "denied", &format!("host `{name}` is not in"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_is_denied() {
    let net = Net::start().await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    // Reads as "allowed.test" to a careless check; the host is canary.test.
    let out = net
        .one(
            &host,
            json!({"url": format!("http://allowed.test:{}@canary.test:{}/", net.a(), net.c())}),
        )
        .await;
    assert_error(&out, "denied", "userinfo");
    let out = net
        .one(
            &host,
            json!({"url": format!("http://user:pw@allowed.test:{}/hello", net.a())}),
        )
        .await;
    assert_error(&out, "denied", "userinfo");
    assert_eq!(net.allowed.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_spellings_are_refused() {
    let net = Net::start().await;
    let c = net.c();
    // Allowlisted, but not opted in to private addresses: the address check
    // must refuse every spelling of loopback.
    let entries = vec![
        HttpEntry::from(format!("http://127.0.0.1:{c}")),
        HttpEntry::from(format!("http://[::1]:{c}")),
        HttpEntry::from(format!("http://[::ffff:7f00:1]:{c}")),
    ];
    let host = net.host(entries, Limits::default()).await;
    for spelling in [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0x7f.1",
        "0177.0.0.1",
        "0177.1",
        "127.1",
        "127.0.1",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
    ] {
        let out = net
            .one(&host, json!({"url": format!("http://{spelling}:{c}/")}))
            .await;
        assert_error(&out, "denied", "blocked range");
    }
    // Unlisted private literals are refused by the allowlist first.
    for spelling in ["10.0.0.1", "169.254.169.254", "[fd00::1]", "0.0.0.0"] {
        let out = net
            .one(&host, json!({"url": format!("http://{spelling}:{c}/")}))
            .await;
        assert_error(&out, "denied", "is not in this plugin's allowlist");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_resolving_to_a_blocked_address_is_denied() {
    let net = Net::start().await;
    let c = net.c();
    let entries = ["rebind.test", "internal.test", "metadata.test", "six.test"]
        .iter()
        .map(|name| HttpEntry::from(format!("http://{name}:{c}")))
        .collect();
    let host = net.host(entries, Limits::default()).await;
    for (name, ip, range) in [
        ("rebind.test", "127.0.0.1", "loopback"),
        ("internal.test", "10.0.0.7", "private"),
        ("metadata.test", "169.254.169.254", "cloud metadata"),
        ("six.test", "::1", "loopback"),
    ] {
        let out = net
            .one(&host, json!({"url": format!("http://{name}:{c}/")}))
            .await;
        assert_error(
            &out,
            "denied",
            &format!("`{name}` resolves to {ip}, in a blocked range"),
        );
        assert!(
            out["message"].as_str().unwrap_or_default().contains(range),
            "{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_unlisted_host_is_returned_not_followed() {
    let net = Net::start().await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let target = format!("http://canary.test:{}/stolen", net.c());
    let out = net
        .one(
            &host,
            json!({"url": format!("http://allowed.test:{}/redirect?to={target}", net.a())}),
        )
        .await;
    assert_eq!(out["status"], 302, "{out}");
    let location = out["headers"]
        .as_array()
        .and_then(|h| h.iter().find(|p| p[0] == "location"))
        .map(|p| p[1].clone());
    assert_eq!(location, Some(json!(target)));
    // The plugin's next request is checked like any other.
    let out = net.one(&host, json!({ "url": target })).await;
    assert_error(&out, "denied", "not in this plugin's allowlist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_is_too_large() {
    let net = Net::start().await;
    let host = net
        .host(
            vec![net.allowed_entry()],
            limits(|l| l.http_response = 1 << 20),
        )
        .await;
    for path in ["/big", "/big-chunked"] {
        let out = net
            .one(
                &host,
                json!({"url": format!("http://allowed.test:{}{path}", net.a())}),
            )
            .await;
        assert_error(&out, "too_large", "larger than 1048576 bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bomb_stops_at_the_response_limit() {
    let net = Net::start().await;
    let host = net
        .host(
            vec![net.allowed_entry()],
            limits(|l| l.http_response = 1 << 20),
        )
        .await;
    let out = net.one(&host, json!({"url": net.url("/bomb")})).await;
    assert_error(&out, "too_large", "decompresses to more than 1048576 bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_drip_response_times_out() {
    let net = Net::start().await;
    let host = net
        .host(
            vec![net.allowed_entry()],
            limits(|l| l.http_timeout = Duration::from_millis(500)),
        )
        .await;
    let started = Instant::now();
    let out = net.one(&host, json!({"url": net.url("/drip")})).await;
    assert_error(&out, "timeout", "did not answer completely");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_drip_cannot_outlive_the_call() {
    let net = Net::start().await;
    let host = net
        .host(
            vec![net.allowed_entry()],
            limits(|l| {
                l.timeout = Duration::from_millis(800);
                l.http_timeout = Duration::from_secs(60);
            }),
        )
        .await;
    let started = Instant::now();
    let result = host
        .call(
            "egress.send",
            &json!({"requests": [{"url": net.url("/drip")}]}).to_string(),
            &CallContext::new(),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    match result {
        Err(e) => assert_eq!(e.limit(), Some(portcullis::Limit::Time), "{e}"),
        Ok(out) => assert_eq!(out.value[0]["error"], "timeout", "{}", out.value),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_short_by_the_call_ending_is_still_audited() {
    let net = Net::start().await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    // Cancelled while the upstream drips its answer: the request was sent,
    // so the audit log must show it although it never finished.
    let cancel = portcullis::CancellationToken::new();
    let later = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        later.cancel();
    });
    let result = host
        .call(
            "egress.send",
            &json!({"requests": [{"url": net.url("/drip?x=1")}]}).to_string(),
            &CallContext::new().cancellation(cancel),
        )
        .await;
    assert!(matches!(result, Err(Error::Cancelled { .. })), "{result:?}");
    let egress: Vec<Value> = net
        .records()
        .iter()
        .map(|r| serde_json::from_str::<Value>(r).expect("json"))
        .filter(|r| r["event"] == "egress")
        .collect();
    assert_eq!(egress.len(), 1, "{egress:?}");
    assert_eq!(egress[0]["destination"], net.url("/drip"));
    assert!(
        egress[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("unfinished")),
        "{egress:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limits_are_enforced() {
    let net = Net::start().await;
    let host = net
        .host(
            vec![net.allowed_entry()],
            limits(|l| {
                l.http_requests = 3;
                l.http_request_body = 10;
            }),
        )
        .await;
    let url = net.url("/hello");
    let outs = net.send(&host, json!([{"url": url, "times": 5}])).await;
    assert!(outs[..3].iter().all(|o| o["status"] == 200), "{outs:?}");
    for out in &outs[3..] {
        assert_error(out, "too_many_requests", "the limit is 3");
    }
    let out = net
        .one(&host, json!({"url": url, "body": "x".repeat(100)}))
        .await;
    assert_error(
        &out,
        "invalid_request",
        "the request body is over the limit",
    );
    let headers: Vec<(String, String)> = (0..65).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let out = net
        .one(&host, json!({"url": url, "headers": headers}))
        .await;
    assert_error(&out, "invalid_request", "headers; the limit is 64");
    // 2 headers of 9 KiB: few, but over the 16 KiB of names and values.
    let headers: Vec<(String, String)> = (0..2)
        .map(|i| (format!("x-big{i}"), "v".repeat(9 * 1024)))
        .collect();
    let out = net
        .one(&host, json!({"url": url, "headers": headers}))
        .await;
    assert_error(&out, "invalid_request", "the limit is 16384 bytes");
    assert_eq!(
        net.allowed.hits(),
        3,
        "only the requests within the limits left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_hop_by_hop_headers_cannot_be_set() {
    let net = Net::start().await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let url = net.url("/echo");
    for header in [
        "Host",
        "connection",
        "Transfer-Encoding",
        "upgrade",
        "content-length",
        "proxy-authorization",
        "Proxy-Connection",
        "proxy-anything",
        "te",
        "trailer",
        "keep-alive",
        "accept-encoding",
        "expect",
    ] {
        let out = net
            .one(
                &host,
                json!({"url": url, "headers": [[header, format!("canary.test:{}", net.c())]]}),
            )
            .await;
        assert_error(&out, "denied", "cannot be set by the plugin");
    }
    let out = net
        .one(&host, json!({"url": url, "headers": [["x-test", "1"]]}))
        .await;
    let echoed: Value = serde_json::from_str(out["body"].as_str().expect("body")).expect("json");
    let headers = echoed["headers"].as_array().expect("headers");
    assert!(
        headers.contains(&json!(["host", format!("allowed.test:{}", net.a())])),
        "{echoed}"
    );
    assert!(headers.contains(&json!(["x-test", "1"])), "{echoed}");
}

/// A loopback destination (so `allow_private`) for `methods`.
pub(crate) fn destination(url: String, methods: &[&str]) -> portcullis::manifest::DestinationEntry {
    portcullis::manifest::DestinationEntry::Table {
        url,
        methods: Some(methods.iter().map(|m| (*m).to_string()).collect()),
        allow_private: true,
    }
}

/// The credential the tests use: long, with characters that encode
/// differently in every form the scrubber knows.
pub(crate) const TOKEN: &str = "tok_3xample+Secret/Value=42";

impl Net {
    /// The egress plugin allowed to reach the allowed server, with secret
    /// `api` (sourced from a file) bound to `destination` and injected by
    /// `inject`.
    pub(crate) async fn host_with_secret(
        &self,
        dir: &std::path::Path,
        destination: portcullis::manifest::DestinationEntry,
        inject: portcullis::manifest::InjectEntry,
    ) -> Host {
        let file = dir.join("api.secret");
        std::fs::write(&file, TOKEN).expect("write secret");
        let secret = portcullis::SecretConfig::file("api", &file);
        self.host_with_secret_config(secret.destination(destination).inject(inject), |b| b)
            .await
    }

    /// The egress plugin allowed to reach the allowed server (GET, POST),
    /// granted `secret` (named `api`).
    async fn host_with_secret_config(
        &self,
        secret: portcullis::SecretConfig,
        extra: impl FnOnce(portcullis::HostBuilder) -> portcullis::HostBuilder,
    ) -> Host {
        let mut plugin = PluginConfig::new(self.plugin, plugin_path(self.plugin))
            .sha256(plugin_sha(self.plugin))
            .http(
                HttpTable::new(format!("http://allowed.test:{}", self.a()))
                    .methods(["GET", "POST"])
                    .allow_private(true),
            )
            .secret("api");
        plugin = plugin.limits(Limits::default());
        let builder = Host::builder()
            .resolver(self.resolver())
            .approver(ApproveAll)
            .max_denials(100)
            .audit(self.audit.clone())
            .secret(secret)
            .plugin(plugin);
        extra(builder).build().await.expect("loads")
    }

    pub(crate) fn bound(&self) -> portcullis::manifest::DestinationEntry {
        destination(
            format!("http://allowed.test:{}/echo", self.a()),
            &["GET", "POST"],
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_receives_the_secret_the_plugin_never_sees() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = net
        .host_with_secret(
            dir.path(),
            net.bound(),
            portcullis::manifest::InjectEntry::header("Authorization", "Bearer {}"),
        )
        .await;
    let out = net
        .one(&host, json!({"url": net.url("/echo"), "secret": "api"}))
        .await;
    assert_eq!(out["status"], 200, "{out}");
    // The upstream got the real credential...
    let heads = net.allowed.heads();
    assert!(
        heads
            .iter()
            .any(|h| h.contains(&format!("authorization: Bearer {TOKEN}"))),
        "{heads:?}"
    );
    // ...and echoed it back, but the plugin (and so the agent) sees only the
    // marker, in the body it received and in the output.
    let text = out.to_string();
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("[redacted:api]"), "{text}");
    // The record names the secret, never its value.
    let records = net.audit.0.lock().expect("lock").clone();
    let egress: Vec<&String> = records
        .iter()
        .filter(|r| r.contains("\"event\":\"egress\""))
        .collect();
    assert_eq!(egress.len(), 1, "{records:?}");
    assert!(egress[0].contains("\"secret\":\"api\""), "{}", egress[0]);
    assert!(records.iter().all(|r| !r.contains(TOKEN)), "{records:?}");
}

/// Every linear memory of the instance a core dump describes, rebuilt from
/// its memory and data sections (the standard core dump format).
fn memories_of(dump: &[u8]) -> Vec<Vec<u8>> {
    use wasmparser::{DataKind, Operator, Parser, Payload};
    let mut memories: Vec<Vec<u8>> = Vec::new();
    for payload in Parser::new(0).parse_all(dump) {
        match payload.expect("a valid core dump") {
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let pages = memory.expect("a memory").initial;
                    memories.push(vec![0; usize::try_from(pages * 65536).expect("fits")]);
                }
            }
            Payload::DataSection(reader) => {
                for data in reader {
                    let data = data.expect("a data segment");
                    let DataKind::Active {
                        memory_index,
                        offset_expr,
                    } = data.kind
                    else {
                        continue;
                    };
                    let offset = match offset_expr.get_operators_reader().read() {
                        Ok(Operator::I32Const { value }) => value as u32 as usize,
                        Ok(Operator::I64Const { value }) => value as usize,
                        other => panic!("unexpected offset {other:?}"),
                    };
                    memories[memory_index as usize][offset..offset + data.data.len()]
                        .copy_from_slice(data.data);
                }
            }
            _ => {}
        }
    }
    memories
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_never_enters_guest_memory() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dumps = dir.path().join("dumps");
    let file = dir.path().join("api.secret");
    std::fs::write(&file, TOKEN).expect("write secret");
    let secret = portcullis::SecretConfig::file("api", &file)
        .destination(net.bound())
        .inject(portcullis::manifest::InjectEntry::header(
            "Authorization",
            "Bearer {}",
        ));
    let host = net
        .host_with_secret_config(secret, |b| b.core_dumps(&dumps))
        .await;
    let echo = net.url("/echo");
    // The server echoes the credential in its body; the plugin keeps every
    // response and then aborts, so the host dumps its memory.
    let result = host
        .call(
            "egress.send",
            &json!({
                "requests": [
                    {"url": echo, "secret": "api", "headers": [["x-probe", "probe-5e1f-in-guest-memory"]]},
                    {"url": echo, "method": "POST", "secret": "api", "body": "{}"},
                ],
                "then_abort": true,
            })
            .to_string(),
            &CallContext::new(),
        )
        .await;
    let reason = match result {
        Err(Error::Crashed { reason, .. }) => reason,
        other => panic!("expected the plugin to abort, got {other:?}"),
    };
    assert!(reason.contains("core dump: "), "{reason}");
    let heads = net.allowed.heads();
    assert_eq!(
        heads
            .iter()
            .filter(|h| h.contains(&format!("authorization: Bearer {TOKEN}")))
            .count(),
        2,
        "the upstream received the credential twice: {heads:?}"
    );

    let files: Vec<_> = std::fs::read_dir(&dumps)
        .expect("dump dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let memories = memories_of(&std::fs::read(&files[0]).expect("read dump"));
    let total: usize = memories.iter().map(Vec::len).sum();
    assert!(total >= 65536, "the dump holds {total} bytes of memory");
    // The scan can see what the plugin handled: its own request and the
    // (scrubbed) echoes are there...
    assert!(
        memories
            .iter()
            .any(|m| holds(m, b"probe-5e1f-in-guest-memory")),
        "the plugin's own data is not in the dump"
    );
    assert!(
        memories.iter().any(|m| holds(m, b"[redacted:api]")),
        "the scrubbed echo is not in the dump"
    );
    // ...but no form of the credential: raw, hex, percent, base64 and
    // base64url at every alignment, looked for with forms computed apart
    // from the host's scrubber, and with the scrubber's own (JSON-escaped
    // too).
    let scrubber = portcullis::Scrubber::new([("api", &portcullis::Secret::new(TOKEN))]);
    for memory in &memories {
        portcullis_tests::assert_no_secret("guest memory", memory, TOKEN);
        assert_eq!(
            scrubber.find(memory),
            None,
            "a form of the secret is in guest memory"
        );
    }
}

/// A vault that gives out a new token for every call.
struct Rotating;

impl portcullis::SecretSource for Rotating {
    fn get(&self, request: &portcullis::SecretRequest) -> Result<portcullis::Secret, String> {
        Ok(portcullis::Secret::new(match request.call_id {
            None => "token-known-at-load-0000".to_string(),
            Some(id) => format!("rotated-token-for-call-{id:04}"),
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_fetched_for_one_call_is_scrubbed_too() {
    let net = Net::start().await;
    let secret = portcullis::SecretConfig::new("api", Rotating)
        .destination(net.bound())
        .inject(portcullis::manifest::InjectEntry::header("X-Api-Key", "{}"));
    let host = net.host_with_secret_config(secret, |b| b).await;
    let out = net
        .one(&host, json!({"url": net.url("/echo"), "secret": "api"}))
        .await;
    assert_eq!(out["status"], 200, "{out}");
    // The upstream got this call's token (not the one known at load)...
    let heads = net.allowed.heads();
    assert!(
        heads
            .iter()
            .any(|h| h.contains("x-api-key: rotated-token-for-call-0001")),
        "{heads:?}"
    );
    // ...and its echo reached the plugin (and the agent) redacted.
    let text = out.to_string();
    assert!(!text.contains("rotated-token-for-call"), "{text}");
    assert!(text.contains("[redacted:api]"), "{text}");
    assert!(
        net.records().iter().all(|r| !r.contains("rotated-token")),
        "an audit record holds the rotated value"
    );
}

/// A vault that answers at load and is down for every call.
struct DownDuringCalls;

impl portcullis::SecretSource for DownDuringCalls {
    fn get(&self, request: &portcullis::SecretRequest) -> Result<portcullis::Secret, String> {
        match request.call_id {
            None => Ok(portcullis::Secret::new("token-known-at-load-0000")),
            Some(_) => Err("the vault is down".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_secret_source_is_an_upstream_error_not_a_denial() {
    let net = Net::start().await;
    let secret = portcullis::SecretConfig::new("api", DownDuringCalls)
        .destination(net.bound())
        .inject(portcullis::manifest::InjectEntry::header("X-Api-Key", "{}"));
    let host = net.host_with_secret_config(secret, |b| b).await;
    let out = net
        .one(&host, json!({"url": net.url("/echo"), "secret": "api"}))
        .await;
    assert_error(
        &out,
        "upstream",
        "secret `api` is unavailable: the vault is down",
    );
    assert_eq!(net.allowed.hits(), 0, "sent without its secret");
    // Not held against the plugin: no denial is recorded.
    let records = net.records();
    assert!(
        records.iter().any(|r| r.contains("\"event\":\"egress\"")),
        "{records:?}"
    );
    assert!(
        !records.iter().any(|r| r.contains("\"event\":\"denied\"")),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_from_a_bound_host_does_not_carry_the_secret_elsewhere() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = net
        .host_with_secret(
            dir.path(),
            destination(net.url("/redirect"), &["GET"]),
            portcullis::manifest::InjectEntry::header("Authorization", "Bearer {}"),
        )
        .await;
    let elsewhere = format!("http://canary.test:{}/steal", net.c());
    let hop = net
        .one(
            &host,
            json!({
                "url": format!("http://allowed.test:{}/redirect?to={elsewhere}", net.a()),
                "secret": "api",
            }),
        )
        .await;
    // The redirect comes back to the plugin; it is not followed.
    assert_eq!(hop["status"], 302, "{hop}");
    // Following it by hand with the secret is a new request, checked anew:
    // the canary is neither allowed nor bound.
    let follow = net
        .one(&host, json!({"url": elsewhere, "secret": "api"}))
        .await;
    assert_error(
        &follow,
        "denied",
        "host `canary.test` is not in this plugin's allowlist",
    );
    // (`Net`'s drop asserts the canary saw no connection.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_is_attached_as_a_query_parameter_when_bound_so() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = net
        .host_with_secret(
            dir.path(),
            net.bound(),
            portcullis::manifest::InjectEntry::query("key"),
        )
        .await;
    let out = net
        .one(&host, json!({"url": net.url("/echo?q=1"), "secret": "api"}))
        .await;
    assert_eq!(out["status"], 200, "{out}");
    let heads = net.allowed.heads();
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with("GET /echo?q=1&key=tok_3xample%2BSecret%2FValue%3D42 ")),
        "{heads:?}"
    );
    assert!(!out.to_string().contains("tok_3xample"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_is_not_sent_to_an_unbound_path_or_method() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = net
        .host_with_secret(
            dir.path(),
            destination(net.url("/echo"), &["GET"]),
            portcullis::manifest::InjectEntry::header("X-Api-Key", "{}"),
        )
        .await;
    let unbound_path = net
        .one(&host, json!({"url": net.url("/hello"), "secret": "api"}))
        .await;
    assert_error(&unbound_path, "denied", "secret `api` is not bound to GET");
    let unbound_method = net
        .one(
            &host,
            json!({"url": net.url("/echo"), "method": "POST", "secret": "api"}),
        )
        .await;
    assert_error(&unbound_method, "denied", "not bound to POST");
    assert!(
        net.allowed.heads().iter().all(|h| !h.contains(TOKEN)),
        "the secret left the host"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_cannot_set_the_injected_header_itself() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = net
        .host_with_secret(
            dir.path(),
            net.bound(),
            portcullis::manifest::InjectEntry::header("X-Api-Key", "{}"),
        )
        .await;
    let out = net
        .one(
            &host,
            json!({
                "url": net.url("/echo"),
                "secret": "api",
                "headers": [["X-Api-Key", "chosen-by-the-plugin"]],
            }),
        )
        .await;
    assert_error(&out, "denied", "is set by the host, not the plugin");
    // Nor without naming the secret: a plugin never writes the header its
    // credentials go in.
    let out = net
        .one(
            &host,
            json!({
                "url": net.url("/echo"),
                "headers": [["x-api-key", "chosen-by-the-plugin"]],
            }),
        )
        .await;
    assert_error(
        &out,
        "denied",
        "header `x-api-key` carries secret `api` and is set by the host, not the plugin",
    );
    assert_eq!(net.allowed.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naming_a_secret_not_granted_is_denied() {
    let net = Net::start().await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let out = net
        .one(
            &host,
            json!({"url": net.url("/hello"), "secret": "API_KEY"}),
        )
        .await;
    assert_error(
        &out,
        "denied",
        "no secret named `API_KEY` is granted to this plugin",
    );
    assert_eq!(net.allowed.hits(), 0);
}

#[tokio::test]
async fn http_import_without_grant_is_refused_at_load() {
    let result = Host::builder()
        .plugin(PluginConfig::new("egress", plugin_path("egress")).sha256(plugin_sha("egress")))
        .build()
        .await;
    match result {
        Err(Error::ForbiddenImports { imports, .. }) => {
            assert_eq!(imports, ["portcullis:tool/http@0.1.0"]);
        }
        other => panic!("expected forbidden imports, got {other:?}"),
    }
}

#[derive(Clone, Default)]
pub(crate) struct Memory(Arc<Mutex<Vec<String>>>);

impl AuditSink for Memory {
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        self.0.lock().expect("lock").push(line.to_string());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_audited_and_denials_stop_the_call() {
    let net = Net::start().await;
    let sink = Memory::default();
    let host = net
        .host_with(vec![net.allowed_entry()], Limits::default(), |b| {
            b.audit(sink.clone()).max_denials(2)
        })
        .await;
    let ok = net.url("/hello");
    let bad = format!("http://canary.test:{}/", net.c());
    let result = host
        .call(
            "egress.send",
            &json!({"requests": [{"url": ok}, {"url": bad, "times": 5}]}).to_string(),
            &CallContext::new(),
        )
        .await;
    match result {
        Err(Error::Suspicious { denials, .. }) => assert_eq!(denials, 3),
        other => panic!("expected a suspicious call, got {other:?}"),
    }
    let records: Vec<Value> = sink
        .0
        .lock()
        .expect("lock")
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let egress: Vec<&Value> = records.iter().filter(|r| r["event"] == "egress").collect();
    assert_eq!(egress.len(), 4, "{egress:?}");
    assert_eq!(egress[0]["allowed"], true);
    assert_eq!(egress[0]["status"], 200);
    assert_eq!(egress[0]["method"], "GET");
    assert_eq!(egress[0]["destination"], net.url("/hello"));
    assert_eq!(egress[1]["allowed"], false);
    assert!(
        egress[1]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("canary.test")
    );
    let denied = records
        .iter()
        .filter(|r| r["event"] == "denied" && r["kind"] == "egress")
        .count();
    assert_eq!(denied, 3);
    assert!(records.iter().any(|r| r["event"] == "suspicious"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_show_egress_and_writes_raise_the_effect() {
    let net = Net::start().await;
    let read_only = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let tool = &read_only.tools()[0];
    assert_eq!(tool.effect, Effect::Read);
    assert_eq!(tool.grants.http.len(), 1);
    assert!(
        tool.grants.http[0].starts_with("http://allowed.test:"),
        "{:?}",
        tool.grants.http
    );
    let mcp =
        portcullis::export_tools(&read_only.tools(), portcullis::ToolFormat::Mcp).expect("mcp");
    assert_eq!(mcp.definitions[0]["annotations"]["openWorldHint"], true);

    let post = HttpTable::new(net.url("/echo"))
        .methods(["POST"])
        .allow_private(true)
        .into();
    let writer = net.host(vec![post], Limits::default()).await;
    assert_eq!(writer.tools()[0].effect, Effect::Write);
    let out = net
        .one(
            &writer,
            json!({"method": "post", "url": net.url("/echo"), "body": "hi"}),
        )
        .await;
    let echoed: Value = serde_json::from_str(out["body"].as_str().expect("body")).expect("json");
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["body"], "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_returns_readable_markdown_from_an_allowed_page() {
    let net = Net::start().await;
    let host = Host::builder()
        .resolver(net.resolver())
        .plugin(
            PluginConfig::new("fetch", plugin_path("fetch"))
                .sha256(plugin_sha("fetch"))
                .http(net.allowed_entry()),
        )
        .build()
        .await
        .expect("fetch loads");
    let base = net.url("");
    let out = host
        .call(
            "fetch.fetch",
            &json!({"url": format!("{base}/page")}).to_string(),
            &CallContext::new(),
        )
        .await
        .expect("fetched");
    // The page's title is the first one, not a later one in the body.
    assert_eq!(out.value["title"], "Test & page");
    let content = out.value["content"].as_str().expect("content");
    assert!(!content.contains("an icon"), "{content}");
    assert!(content.contains("# Welcome"), "{content}");
    assert!(content.contains("Some bold text <here>."), "{content}");
    assert!(content.contains("- [two](/hello)"), "{content}");
    assert!(!content.contains("var x"), "{content}");

    // Redirects inside the allowlist are followed, each hop checked.
    let out = host
        .call(
            "fetch.fetch",
            &json!({"url": format!("{base}/redirect?to=/hello")}).to_string(),
            &CallContext::new(),
        )
        .await
        .expect("fetched");
    assert_eq!(out.value["content"], "hello from allowed");
    assert_eq!(out.value["url"], format!("{base}/hello"));

    // A redirect out of the allowlist is refused, not followed.
    let err = host
        .call(
            "fetch.fetch",
            &json!({"url": format!("{base}/redirect?to=http://canary.test:{}/", net.c())})
                .to_string(),
            &CallContext::new(),
        )
        .await
        .expect_err("denied");
    assert!(err.to_string().contains("denied"), "{err}");
}
