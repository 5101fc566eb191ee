//! The network of the egress tests: [`Net`] starts the loopback servers
//! (see `loopback.rs`: an allowed server, a canary that must never see a
//! connection, a resolver that maps test names to them and to blocked
//! addresses) and builds hosts around them for one test plugin.
//!
//! Every HTTP claim is written once and run through both interfaces a
//! plugin can reach the network by ([`Interface`]): [`on_both`] runs a
//! case once per interface, each on its own servers, and names the
//! interface it failed through. Where the two interfaces report an outcome
//! differently (`wasi:http` error codes carry no text), [`Net`]'s
//! assertions check each in its own terms and both on the audit record.

pub use crate::loopback::{Allowed, Canary, ReadRequest, TestResolver, read_request};
use crate::{ApproveAll, plugin_path, plugin_sha};
use portcullis::manifest::{DestinationEntry, HttpEntry, HttpTable, InjectEntry};
use portcullis::{AuditSink, CallContext, Host, HostBuilder, Limits, PluginConfig, SecretConfig};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The two ways a plugin reaches the network, each driven by a test-only
/// plugin that sends whatever requests its arguments describe (both take
/// the same request shape: `{"requests": [{"url", "method", "headers",
/// "body", "times"}]}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// `portcullis:tool/http`, through the `egress` plugin; its requests
    /// may name a secret, and its errors carry a kind and a message.
    Tool,
    /// `wasi:http/outgoing-handler`, through the `wasihttp` plugin; its
    /// errors are `wasi:http` error codes, without the gate's reason.
    Wasi,
}

impl Interface {
    /// Both, in the order [`on_both`] runs them.
    pub const BOTH: [Interface; 2] = [Interface::Tool, Interface::Wasi];

    /// The test plugin that drives it.
    pub fn plugin(self) -> &'static str {
        match self {
            Interface::Tool => "egress",
            Interface::Wasi => "wasihttp",
        }
    }
}

impl std::fmt::Display for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interface::Tool => write!(f, "portcullis:tool/http (plugin `egress`)"),
            Interface::Wasi => write!(f, "wasi:http (plugin `wasihttp`)"),
        }
    }
}

/// Runs `case` once through each [`Interface`], each on a fresh [`Net`],
/// one after the other (so timing claims are not skewed); both run even if
/// the first fails.
///
/// # Panics
///
/// If the case failed through either interface, naming each and its
/// panic message.
pub async fn on_both<F, Fut>(case: F)
where
    F: Fn(Net) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut failures = Vec::new();
    for via in Interface::BOTH {
        let net = Net::start(via).await;
        if let Err(error) = tokio::spawn(case(net)).await {
            let message = match error.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "a panic without a message".into()),
                Err(error) => error.to_string(),
            };
            failures.push(format!("through {via}: {message}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The servers of one test, and the plugin that reaches for them.
///
/// Its drop asserts that the canary saw no connection.
#[derive(Debug)]
pub struct Net {
    /// The server the tests allow.
    pub allowed: Allowed,
    canary: Canary,
    /// Audit records of the hosts built here (unless a test sets its own
    /// sink).
    pub audit: MemoryAudit,
    via: Interface,
}

impl Net {
    /// Starts the servers, for `via`'s plugin.
    pub async fn start(via: Interface) -> Net {
        Net {
            allowed: Allowed::start().await,
            canary: Canary::start().await,
            audit: MemoryAudit::default(),
            via,
        }
    }

    /// The interface this test's plugin uses.
    pub fn via(&self) -> Interface {
        self.via
    }

    /// This test's plugin.
    pub fn plugin(&self) -> &'static str {
        self.via.plugin()
    }

    /// The audit records so far, as written.
    pub fn records(&self) -> Vec<String> {
        self.audit.lines()
    }

    /// The `egress` audit records so far, parsed.
    pub fn egress_records(&self) -> Vec<Value> {
        self.records()
            .iter()
            .map(|line| serde_json::from_str::<Value>(line).expect("a JSON record"))
            .filter(|r| r["event"] == "egress")
            .collect()
    }

    /// The allowed server's port.
    pub fn a(&self) -> u16 {
        self.allowed.port()
    }

    /// The canary's port.
    pub fn c(&self) -> u16 {
        self.canary.addr.port()
    }

    /// `path` on the allowed server, by name.
    pub fn url(&self, path: &str) -> String {
        format!("http://allowed.test:{}{path}", self.a())
    }

    /// Has this test's plugin send `requests`; every outcome.
    pub async fn send(&self, host: &Host, requests: Value) -> Vec<Value> {
        let output = host
            .call(
                &format!("{}.send", self.plugin()),
                &json!({ "requests": requests }).to_string(),
                &CallContext::new(),
            )
            .await
            .expect("the call completes");
        output.value.as_array().expect("a list of outcomes").clone()
    }

    /// Has this test's plugin send one request; its outcome.
    pub async fn one(&self, host: &Host, request: Value) -> Value {
        self.send(host, json!([request])).await.remove(0)
    }

    /// `request`, naming secret `api` where the interface can
    /// (`portcullis:tool/http`); through `wasi:http` the host picks the
    /// secret by destination.
    pub fn with_secret(&self, mut request: Value) -> Value {
        if self.via == Interface::Tool {
            request["secret"] = json!("api");
        }
        request
    }

    /// `allowed.test` and every other test name on loopback (the canary
    /// and allowed servers are told apart by port), `internal.test` on a
    /// private address, `metadata.test` on the cloud metadata address.
    pub fn resolver(&self) -> TestResolver {
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
    pub fn allowed_entry(&self) -> HttpEntry {
        HttpTable::new(format!("http://allowed.test:{}", self.a()))
            .allow_private(true)
            .into()
    }

    /// This test's plugin with `entries` and `limits`, this net's resolver,
    /// an approver that approves everything, 100 denials allowed and the
    /// audit kept in [`Net::audit`].
    pub async fn host(&self, entries: Vec<HttpEntry>, limits: Limits) -> Host {
        self.host_with(entries, limits, |b| b).await
    }

    /// [`Net::host`], with `extra` applied to the builder last.
    pub async fn host_with(
        &self,
        entries: Vec<HttpEntry>,
        limits: Limits,
        extra: impl FnOnce(HostBuilder) -> HostBuilder,
    ) -> Host {
        let mut plugin = PluginConfig::new(self.plugin(), plugin_path(self.plugin()))
            .sha256(plugin_sha(self.plugin()))
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

    /// This test's plugin allowed to reach the allowed server, with secret
    /// `api` (sourced from a file holding [`TOKEN`]) bound to
    /// `destination` and injected by `inject`.
    pub async fn host_with_secret(
        &self,
        dir: &std::path::Path,
        destination: DestinationEntry,
        inject: InjectEntry,
    ) -> Host {
        let file = dir.join("api.secret");
        std::fs::write(&file, TOKEN).expect("write secret");
        let secret = SecretConfig::file("api", &file);
        self.host_with_secret_config(secret.destination(destination).inject(inject), |b| b)
            .await
    }

    /// This test's plugin allowed to reach the allowed server (GET, POST),
    /// granted `secret` (named `api`).
    pub async fn host_with_secret_config(
        &self,
        secret: SecretConfig,
        extra: impl FnOnce(HostBuilder) -> HostBuilder,
    ) -> Host {
        let plugin = PluginConfig::new(self.plugin(), plugin_path(self.plugin()))
            .sha256(plugin_sha(self.plugin()))
            .http(
                HttpTable::new(format!("http://allowed.test:{}", self.a()))
                    .methods(["GET", "POST"])
                    .allow_private(true),
            )
            .secret("api")
            .limits(Limits::default());
        let builder = Host::builder()
            .resolver(self.resolver())
            .approver(ApproveAll)
            .max_denials(100)
            .audit(self.audit.clone())
            .secret(secret)
            .plugin(plugin);
        extra(builder).build().await.expect("loads")
    }

    /// The allowed server's `/echo` for GET and POST, as a secret's
    /// destination.
    pub fn bound(&self) -> DestinationEntry {
        destination(
            format!("http://allowed.test:{}/echo", self.a()),
            &["GET", "POST"],
        )
    }

    /// The outcome is a denial by the gate whose reason holds `reason`:
    /// in the outcome through `portcullis:tool/http`, and on the last
    /// egress audit record (not allowed) through either.
    pub fn assert_denied(&self, outcome: &Value, reason: &str) {
        self.assert_refused(outcome, "denied", "HttpRequestDenied", reason);
        let last = self.egress_records().pop().expect("an egress record");
        assert_eq!(last["allowed"], false, "{last}");
    }

    /// The outcome is a failure whose reason holds `reason`: through
    /// `portcullis:tool/http` an error of kind `kind` whose message holds
    /// it, through `wasi:http` the error code `code`; through either, the
    /// last egress audit record holds the reason (a request the gate let
    /// out and the upstream then failed is recorded as allowed).
    pub fn assert_refused(&self, outcome: &Value, kind: &str, code: &str, reason: &str) {
        match self.via {
            Interface::Tool => assert_error(outcome, kind, reason),
            Interface::Wasi => assert_code(outcome, code),
        }
        let last = self.egress_records().pop().expect("an egress record");
        let recorded = last["reason"].as_str().unwrap_or_default();
        assert!(recorded.contains(reason), "`{reason}` not in: {recorded}");
    }

    /// The plugin could not set a header: through `portcullis:tool/http`
    /// the gate denies the request with a message holding `message`;
    /// through `wasi:http` the guest cannot even build the fields.
    pub fn assert_header_refused(&self, outcome: &Value, message: &str) {
        match self.via {
            Interface::Tool => assert_error(outcome, "denied", message),
            Interface::Wasi => {
                assert_eq!(outcome["error"], "header", "{outcome}");
                assert_eq!(outcome["message"], "HeaderError::Forbidden", "{outcome}");
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.canary.assert_untouched();
        }
    }
}

/// A `portcullis:tool/http` outcome is an error of kind `kind` whose
/// message holds `text`.
pub fn assert_error(outcome: &Value, kind: &str, text: &str) {
    assert_eq!(outcome["error"], kind, "{outcome}");
    let message = outcome["message"].as_str().unwrap_or_default();
    assert!(message.contains(text), "`{text}` not in: {message}");
}

/// A `wasi:http` outcome is the error `code` (Debug form, prefix).
pub fn assert_code(outcome: &Value, code: &str) {
    assert_eq!(outcome["error"], "response", "{outcome}");
    let message = outcome["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("ErrorCode::{code}")),
        "expected {code}, got: {message}"
    );
}

/// The credential the secret tests use: long, with characters that encode
/// differently in every form the scrubber knows.
pub const TOKEN: &str = "tok_3xample+Secret/Value=42";

/// A loopback destination (so `allow_private`) for `methods`.
pub fn destination(url: String, methods: &[&str]) -> DestinationEntry {
    DestinationEntry::Table {
        url,
        methods: Some(methods.iter().map(|m| (*m).to_string()).collect()),
        allow_private: true,
    }
}

/// An audit sink that keeps every line in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryAudit(Arc<Mutex<Vec<String>>>);

impl MemoryAudit {
    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl AuditSink for MemoryAudit {
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.to_string());
        Ok(())
    }
}
