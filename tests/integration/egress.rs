//! One egress gate for every outbound request: the allowlist, the SSRF
//! defence, redirects, forbidden headers and the audit trail. Each claim is written
//! once and run through both interfaces a plugin can reach the network by
//! (`portcullis:tool/http` with the test-only `egress` plugin, `wasi:http`
//! with `wasihttp`; see `portcullis_tests::net`), against a loopback
//! server the tests allow and a loopback canary that must never see a
//! connection. The harness's resolver only answers loopback or blocked
//! addresses, so nothing can leave the machine.
//!
//! Claims about one interface only are at the end of this file
//! (`portcullis:tool/http`) and in `wasi_http.rs`; the gate's limits are in
//! `egress_limits.rs`, secrets through egress in `egress_secrets.rs`.

use portcullis::manifest::{HttpEntry, HttpTable};
use portcullis::{CallContext, Effect, Error, Host, Limits, PluginConfig};
use portcullis_tests::net::{Interface, MemoryAudit};
use portcullis_tests::{Net, on_both, plugin_path, plugin_sha};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_host_is_reached() {
    on_both(|net| async move {
        let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
        let out = net.one(&host, json!({"url": net.url("/hello")})).await;
        assert_eq!(out["status"], 200, "{out}");
        assert_eq!(out["body"], "hello from allowed");
        // The request is on the audit record like any other, and so is the
        // next one, which the gate refuses.
        let out = net
            .one(
                &host,
                json!({"method": "POST", "url": net.url("/echo"), "body": "x"}),
            )
            .await;
        net.assert_denied(&out, "method `POST` is not allowed");
        let records = net.egress_records();
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records[0]["allowed"], true);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reuses_one_connection_and_still_checks_every_request() {
    on_both(|net| async move {
        let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
        let keep = json!({"url": net.url("/keep"), "times": 5});
        // A refused request to the same destination in between: a kept
        // connection is no way past the gate.
        let post = json!({"method": "POST", "url": net.url("/keep"), "body": "x"});
        let outs = net.send(&host, json!([keep, post, keep])).await;
        assert_eq!(outs.len(), 11, "{outs:?}");
        for (i, out) in outs.iter().enumerate() {
            if i == 5 {
                assert_eq!(out["status"], Value::Null, "{out}");
            } else {
                assert_eq!(out["status"], 200, "{i}: {out}");
                assert_eq!(out["body"], "kept", "{i}: {out}");
            }
        }
        assert_eq!(net.allowed.hits(), 1, "ten requests, one connection");
        let records = net.egress_records();
        assert_eq!(records.len(), 11, "{records:?}");
        assert_eq!(records[5]["allowed"], false, "{}", records[5]);
        assert!(
            records
                .iter()
                .enumerate()
                .all(|(i, r)| i == 5 || r["allowed"] == true),
            "{records:?}"
        );
        // No connection outlives its call: the next call opens its own.
        let out = net.one(&host, json!({"url": net.url("/keep")})).await;
        assert_eq!(out["status"], 200, "{out}");
        assert_eq!(net.allowed.hits(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_host_is_denied() {
    on_both(|net| async move {
        let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
        let out = net
            .one(
                &host,
                json!({"url": format!("http://canary.test:{}/", net.c())}),
            )
            .await;
        net.assert_denied(&out, "host `canary.test` is not in this plugin's allowlist");
        assert_eq!(net.allowed.hits(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_port_is_denied() {
    on_both(|net| async move {
        let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
        let out = net
            .one(
                &host,
                json!({"url": format!("http://allowed.test:{}/hello", net.c())}),
            )
            .await;
        net.assert_denied(&out, "is not in this plugin's allowlist");
        let out = net
            .one(&host, json!({"url": "http://allowed.test/hello"}))
            .await;
        net.assert_denied(&out, "`http://allowed.test:80`");
        assert_eq!(net.allowed.hits(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_scheme_is_denied() {
    on_both(|net| async move {
        let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
        let out = net
            .one(
                &host,
                json!({"url": format!("https://allowed.test:{}/hello", net.a())}),
            )
            .await;
        net.assert_denied(&out, "`https://allowed.test:");
        for url in [
            "ftp://allowed.test/",
            "file:///etc/passwd",
            "gopher://allowed.test/",
        ] {
            let out = net.one(&host, json!({ "url": url })).await;
            match net.via() {
                Interface::Tool => net.assert_denied(&out, "is not allowed: use http or https"),
                // `wasi:http` refuses any other scheme before the gate.
                Interface::Wasi => assert!(out["error"].is_string(), "{url}: {out}"),
            }
        }
        assert_eq!(net.allowed.hits(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_and_path_are_denied() {
    on_both(|net| async move {
        let entry = HttpTable::new(net.url("/hello")).allow_private(true).into();
        let host = net.host(vec![entry], Limits::default()).await;
        let base = net.url("");
        let out = net
            .one(&host, json!({"url": format!("{base}/hello")}))
            .await;
        assert_eq!(out["status"], 200, "{out}");
        for method in ["POST", "DELETE"] {
            let out = net
                .one(
                    &host,
                    json!({"method": method, "url": format!("{base}/hello")}),
                )
                .await;
            net.assert_denied(&out, &format!("method `{method}` is not allowed"));
        }
        for path in ["/echo", "/hello2", "/hello/../echo", "/hello/%2e%2e/echo"] {
            let out = net
                .one(&host, json!({"url": format!("{base}{path}")}))
                .await;
            net.assert_denied(&out, "outside the allowed prefixes `/hello`");
        }
        assert_eq!(net.allowed.hits(), 1, "only the allowed request connected");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suffix_confusion_is_denied() {
    on_both(|net| async move {
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
            net.assert_denied(&out, &format!("host `{name}` is not in"));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_is_denied() {
    on_both(|net| async move {
        let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
        // Reads as "allowed.test" to a careless check; the host is
        // canary.test.
        let out = net
            .one(
                &host,
                json!({"url": format!("http://allowed.test:{}@canary.test:{}/", net.a(), net.c())}),
            )
            .await;
        net.assert_denied(&out, "userinfo");
        let out = net
            .one(
                &host,
                json!({"url": format!("http://user:pw@allowed.test:{}/hello", net.a())}),
            )
            .await;
        net.assert_denied(&out, "userinfo");
        assert_eq!(net.allowed.hits(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_spellings_are_refused() {
    on_both(|net| async move {
        let c = net.c();
        // Allowlisted, but not opted in to private addresses: the address
        // check must refuse every spelling of loopback.
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
            net.assert_denied(&out, "blocked range");
        }
        // Unlisted private literals are refused by the allowlist first.
        for spelling in ["10.0.0.1", "169.254.169.254", "[fd00::1]", "0.0.0.0"] {
            let out = net
                .one(&host, json!({"url": format!("http://{spelling}:{c}/")}))
                .await;
            net.assert_denied(&out, "is not in this plugin's allowlist");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_resolving_to_a_blocked_address_is_denied() {
    on_both(|net| async move {
        let c = net.c();
        let entries = ["rebind.test", "internal.test", "metadata.test", "six.test"]
            .iter()
            .map(|name| HttpEntry::from(format!("http://{name}:{c}")))
            .collect();
        let host = net.host(entries, Limits::default()).await;
        for (name, range) in [
            ("rebind.test", "loopback"),
            ("internal.test", "private"),
            ("metadata.test", "cloud metadata"),
            ("six.test", "loopback"),
        ] {
            let out = net
                .one(&host, json!({"url": format!("http://{name}:{c}/")}))
                .await;
            net.assert_denied(
                &out,
                &format!("`{name}` is or resolves to an address in a blocked range"),
            );
            net.assert_denied(&out, range);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_unlisted_host_is_returned_not_followed() {
    on_both(|net| async move {
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
        net.assert_denied(&out, "not in this plugin's allowlist");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_hop_by_hop_headers_cannot_be_set() {
    on_both(|net| async move {
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
            // `wasi:http` lets a guest's `content-length` through to be
            // checked against its body; the host then frames the request.
            if net.via() == Interface::Wasi && header == "content-length" {
                continue;
            }
            let out = net
                .one(
                    &host,
                    json!({"url": url, "headers": [[header, format!("canary.test:{}", net.c())]]}),
                )
                .await;
            net.assert_header_refused(&out, "cannot be set by the plugin");
        }
        let out = net
            .one(&host, json!({"url": url, "headers": [["x-test", "1"]]}))
            .await;
        let echoed: Value =
            serde_json::from_str(out["body"].as_str().expect("body")).expect("json");
        let headers = echoed["headers"].as_array().expect("headers");
        // The gate's client set `Host` from the checked URL.
        assert!(
            headers.contains(&json!(["host", format!("allowed.test:{}", net.a())])),
            "{echoed}"
        );
        assert!(headers.contains(&json!(["x-test", "1"])), "{echoed}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_audited_and_denials_stop_the_call() {
    on_both(|net| async move {
        let sink = MemoryAudit::default();
        let host = net
            .host_with(vec![net.allowed_entry()], Limits::default(), |b| {
                b.audit(sink.clone()).max_denials(2)
            })
            .await;
        let ok = net.url("/hello");
        let bad = format!("http://canary.test:{}/", net.c());
        let result = host
            .call(
                &format!("{}.send", net.plugin()),
                &json!({"requests": [{"url": ok}, {"url": bad, "times": 5}]}).to_string(),
                &CallContext::new(),
            )
            .await;
        match result {
            Err(Error::Suspicious { denials, .. }) => assert_eq!(denials, 3),
            other => panic!("expected a suspicious call, got {other:?}"),
        }
        let records: Vec<Value> = sink
            .lines()
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
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_import_without_grant_is_refused_at_load() {
    on_both(|net| async move {
        let plugin = net.plugin();
        let result = Host::builder()
            .plugin(PluginConfig::new(plugin, plugin_path(plugin)).sha256(plugin_sha(plugin)))
            .build()
            .await;
        let imports = match result {
            Err(Error::ForbiddenImports { imports, .. }) => imports,
            other => panic!("expected forbidden imports, got {other:?}"),
        };
        match net.via() {
            Interface::Tool => assert_eq!(imports, ["portcullis:tool/http@0.1.0"]),
            Interface::Wasi => {
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
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// Through `portcullis:tool/http` only.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_show_egress_and_writes_raise_the_effect() {
    let net = Net::start(Interface::Tool).await;
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
