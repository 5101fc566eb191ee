//! The same egress cases through `wasi:http/outgoing-handler`, the
//! interface components from JavaScript, Python or Go toolchains use: the
//! test-only `wasihttp` plugin builds its requests with the standard WASI
//! types, and every one of them must meet the same gate as
//! `portcullis:tool/http` (allowlist, SSRF defence, limits, secrets,
//! audit), with the canary untouched.
//!
//! `wasi:http` error codes carry no text for a denial, so the reason is
//! checked where the operator sees it: the audit record.

use crate::egress::{Net, TOKEN, destination};
use portcullis::manifest::{HttpEntry, HttpTable, InjectEntry};
use portcullis::{CallContext, Error, Host, Limits, PluginConfig};
use portcullis_tests::{limits, plugin_path, plugin_sha};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn start() -> Net {
    Net::start_for("wasihttp").await
}

/// The outcome is the `wasi:http` error `code` (Debug form, prefix).
fn assert_code(outcome: &Value, code: &str) {
    assert_eq!(outcome["error"], "response", "{outcome}");
    let message = outcome["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("ErrorCode::{code}")),
        "expected {code}, got: {message}"
    );
}

/// The outcome is a denial, and the last egress audit record says why.
fn assert_denied(net: &Net, outcome: &Value, reason: &str) {
    assert_code(outcome, "HttpRequestDenied");
    let last = egress_records(net).pop().expect("an egress record");
    assert_eq!(last["allowed"], false, "{last}");
    let recorded = last["reason"].as_str().unwrap_or_default();
    assert!(recorded.contains(reason), "`{reason}` not in: {recorded}");
}

fn egress_records(net: &Net) -> Vec<Value> {
    net.records()
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON record"))
        .filter(|r| r["event"] == "egress")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_reaches_an_allowed_host_through_the_gate() {
    let net = start().await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let out = net.one(&host, json!({"url": net.url("/hello")})).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"], "hello from allowed");
    // The gate's client set `Host` from the checked URL and the request is
    // on the audit record like any other.
    let out = net
        .one(
            &host,
            json!({"method": "POST", "url": net.url("/echo"), "body": "x"}),
        )
        .await;
    assert_code(&out, "HttpRequestDenied");
    let records = egress_records(&net);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["allowed"], true);
    assert!(
        records[1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("method `POST` is not allowed")),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_unlisted_host_port_and_scheme_are_denied() {
    let net = start().await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let out = net
        .one(
            &host,
            json!({"url": format!("http://canary.test:{}/", net.c())}),
        )
        .await;
    assert_denied(
        &net,
        &out,
        "host `canary.test` is not in this plugin's allowlist",
    );
    let out = net
        .one(
            &host,
            json!({"url": format!("http://allowed.test:{}/hello", net.c())}),
        )
        .await;
    assert_denied(&net, &out, "is not in this plugin's allowlist");
    let out = net
        .one(
            &host,
            json!({"url": format!("https://allowed.test:{}/hello", net.a())}),
        )
        .await;
    assert_denied(&net, &out, "`https://allowed.test:");
    assert_eq!(net.allowed.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_wrong_method_and_path_are_denied() {
    let net = start().await;
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
            json!({"method": "DELETE", "url": format!("{base}/hello")}),
        )
        .await;
    assert_denied(&net, &out, "method `DELETE` is not allowed");
    for path in ["/echo", "/hello2", "/hello/../echo", "/hello/%2e%2e/echo"] {
        let out = net
            .one(&host, json!({"url": format!("{base}{path}")}))
            .await;
        assert_denied(&net, &out, "outside the allowed prefixes `/hello`");
    }
    assert_eq!(net.allowed.hits(), 1, "only the allowed request connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_suffix_confusion_and_userinfo_are_denied() {
    let net = start().await;
    let entry = HttpTable::new(format!("http://*.allowed.test:{}", net.c()))
        .allow_private(true)
        .into();
    let host = net
        .host(vec![entry, net.allowed_entry()], Limits::default())
        .await;
    for name in ["allowed.test.canary.test", "evilallowed.test"] {
        let out = net
            .one(&host, json!({"url": format!("http://{name}:{}/", net.c())}))
            .await;
        assert_denied(&net, &out, &format!("host `{name}` is not in"));
    }
    let out = net
        .one(
            &host,
            json!({"url": format!("http://user:pw@allowed.test:{}/hello", net.a())}),
        )
        .await;
    assert_denied(&net, &out, "userinfo");
    assert_eq!(net.allowed.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_ip_spellings_and_blocked_names_are_refused() {
    let net = start().await;
    let c = net.c();
    let mut entries = vec![
        HttpEntry::from(format!("http://127.0.0.1:{c}")),
        HttpEntry::from(format!("http://[::1]:{c}")),
        HttpEntry::from(format!("http://[::ffff:7f00:1]:{c}")),
    ];
    for name in ["rebind.test", "internal.test", "metadata.test"] {
        entries.push(HttpEntry::from(format!("http://{name}:{c}")));
    }
    let host = net.host(entries, Limits::default()).await;
    for spelling in [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
    ] {
        let out = net
            .one(&host, json!({"url": format!("http://{spelling}:{c}/")}))
            .await;
        assert_denied(&net, &out, "blocked range");
    }
    for (name, ip) in [
        ("rebind.test", "127.0.0.1"),
        ("internal.test", "10.0.0.7"),
        ("metadata.test", "169.254.169.254"),
    ] {
        let out = net
            .one(&host, json!({"url": format!("http://{name}:{c}/")}))
            .await;
        assert_denied(
            &net,
            &out,
            &format!("`{name}` resolves to {ip}, in a blocked range"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_redirect_is_returned_not_followed() {
    let net = start().await;
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
    let out = net.one(&host, json!({ "url": target })).await;
    assert_denied(&net, &out, "not in this plugin's allowlist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_oversized_and_gzip_bomb_responses_stop_at_the_limit() {
    let net = start().await;
    let host = net
        .host(
            vec![net.allowed_entry()],
            limits(|l| l.http_response = 1 << 20),
        )
        .await;
    for path in ["/big", "/big-chunked", "/bomb"] {
        let out = net
            .one(
                &host,
                json!({"url": format!("http://allowed.test:{}{path}", net.a())}),
            )
            .await;
        assert_code(&out, "HttpResponseBodySize");
    }
    let records = egress_records(&net);
    assert!(
        records[2]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("decompresses to more than 1048576 bytes")),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_guest_timeouts_cannot_exceed_the_hosts() {
    let net = start().await;
    let host = net
        .host(
            vec![net.allowed_entry()],
            limits(|l| l.http_timeout = Duration::from_millis(500)),
        )
        .await;
    let drip = net.url("/drip");
    // The guest asks for a minute; the host's half second wins.
    let started = Instant::now();
    let out = net
        .one(
            &host,
            json!({"url": drip, "first_byte_timeout_ms": 60_000, "connect_timeout_ms": 60_000}),
        )
        .await;
    assert_code(&out, "HttpResponseTimeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_guest_may_shorten_the_timeout() {
    let net = start().await;
    let host = net
        .host(
            vec![net.allowed_entry()],
            limits(|l| l.http_timeout = Duration::from_secs(30)),
        )
        .await;
    let started = Instant::now();
    let out = net
        .one(
            &host,
            json!({"url": net.url("/drip"), "first_byte_timeout_ms": 300}),
        )
        .await;
    assert_code(&out, "HttpResponseTimeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the guest's 300 ms were not honoured: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_request_limits_are_enforced() {
    let net = start().await;
    let host = net
        .host(
            vec![
                HttpTable::new(net.url(""))
                    .methods(["GET", "POST"])
                    .allow_private(true)
                    .into(),
            ],
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
        assert_code(out, "ConnectionLimitReached");
    }
    // Every attempt is on the record, the refused ones too.
    let records = egress_records(&net);
    assert_eq!(records.len(), 5, "{records:?}");
    assert!(
        records[3..].iter().all(|r| r["allowed"] == false
            && r["reason"]
                .as_str()
                .is_some_and(|m| m.contains("the limit is 3"))),
        "{records:?}"
    );

    let host = net
        .host(
            vec![
                HttpTable::new(net.url(""))
                    .methods(["GET", "POST"])
                    .allow_private(true)
                    .into(),
            ],
            limits(|l| l.http_request_body = 10),
        )
        .await;
    let out = net
        .one(
            &host,
            json!({"method": "POST", "url": url, "body": "x".repeat(100_000)}),
        )
        .await;
    assert_code(
        &out,
        "InternalError(Some(\"the request body is over the limit of 10 bytes",
    );
    assert_eq!(net.allowed.hits(), 3, "no oversized body was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_host_and_hop_by_hop_headers_cannot_be_set() {
    let net = start().await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let url = net.url("/echo");
    for header in [
        "Host",
        "connection",
        "Transfer-Encoding",
        "upgrade",
        "proxy-authorization",
        "te",
    ] {
        let out = net
            .one(
                &host,
                json!({"url": url, "headers": [[header, format!("canary.test:{}", net.c())]]}),
            )
            .await;
        assert_eq!(out["error"], "header", "{header}: {out}");
        assert_eq!(out["message"], "HeaderError::Forbidden", "{header}: {out}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_secret_is_attached_by_destination_and_never_seen() {
    let net = start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = net
        .host_with_secret(
            dir.path(),
            net.bound(),
            InjectEntry::header("Authorization", "Bearer {}"),
        )
        .await;
    // Bound destination: the host attaches the credential; the echo of it
    // reaches the plugin scrubbed.
    let out = net.one(&host, json!({"url": net.url("/echo")})).await;
    assert_eq!(out["status"], 200, "{out}");
    let heads = net.allowed.heads();
    assert!(
        heads
            .iter()
            .any(|h| h.contains(&format!("authorization: Bearer {TOKEN}"))),
        "{heads:?}"
    );
    let text = out.to_string();
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("[redacted:api]"), "{text}");
    // Allowed but not bound: sent without it.
    let out = net.one(&host, json!({"url": net.url("/hello")})).await;
    assert_eq!(out["status"], 200, "{out}");
    let heads = net.allowed.heads();
    assert!(
        heads.last().is_some_and(|h| !h.contains(TOKEN)),
        "{heads:?}"
    );
    let records = egress_records(&net);
    assert_eq!(records[0]["secret"], "api", "{records:?}");
    assert!(records[1]["secret"].is_null(), "{records:?}");
    assert!(net.records().iter().all(|r| !r.contains(TOKEN)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_plugin_cannot_set_the_injected_header_itself() {
    let net = start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = net
        .host_with_secret(
            dir.path(),
            net.bound(),
            InjectEntry::header("X-Api-Key", "{}"),
        )
        .await;
    let out = net
        .one(
            &host,
            json!({
                "url": net.url("/echo"),
                "headers": [["X-Api-Key", "chosen-by-the-plugin"]],
            }),
        )
        .await;
    assert_eq!(out["error"], "header", "{out}");
    assert_eq!(out["message"], "HeaderError::Forbidden", "{out}");
    assert_eq!(net.allowed.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_denials_stop_the_call() {
    let net = start().await;
    // `Net`'s hosts allow 100 denials; this one allows 2.
    let strict = Host::builder()
        .plugin(
            PluginConfig::new("wasihttp", plugin_path("wasihttp"))
                .sha256(plugin_sha("wasihttp"))
                .http(net.allowed_entry()),
        )
        .max_denials(2)
        .build()
        .await
        .expect("loads");
    let result = strict
        .call(
            "wasihttp.send",
            &json!({"requests": [{"url": format!("http://canary.test:{}/", net.c()), "times": 10}]})
                .to_string(),
            &CallContext::new(),
        )
        .await;
    match result {
        Err(Error::Suspicious { denials, .. }) => assert!(denials > 2, "{denials}"),
        other => panic!("expected the call to be stopped, got {other:?}"),
    }
}

#[tokio::test]
async fn wasi_http_import_without_grant_is_refused_at_load() {
    let result = Host::builder()
        .plugin(
            PluginConfig::new("wasihttp", plugin_path("wasihttp")).sha256(plugin_sha("wasihttp")),
        )
        .build()
        .await;
    match result {
        Err(Error::ForbiddenImports { imports, .. }) => {
            assert!(
                imports
                    .iter()
                    .any(|i| i.starts_with("wasi:http/outgoing-handler@0.2"))
                    && imports.iter().any(|i| i.starts_with("wasi:http/types@0.2")),
                "{imports:?}"
            );
            assert!(
                imports.iter().all(|i| i.starts_with("wasi:http/")),
                "{imports:?}"
            );
        }
        other => panic!("expected forbidden imports, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_bound_secret_needs_a_binding_not_just_a_grant() {
    let net = start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = net
        .host_with_secret(
            dir.path(),
            destination(net.url("/echo"), &["GET"]),
            InjectEntry::header("X-Api-Key", "{}"),
        )
        .await;
    // POST to the bound path is allowed by the allowlist but not by the
    // binding's methods: it goes out without the secret.
    let out = net
        .one(
            &host,
            json!({"method": "POST", "url": net.url("/echo"), "body": "{}"}),
        )
        .await;
    assert_eq!(out["status"], 200, "{out}");
    assert!(
        net.allowed.heads().iter().all(|h| !h.contains(TOKEN)),
        "the secret left the host"
    );
}
