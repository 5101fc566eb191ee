//! The gate's side doors (issue 13, B and C): paths compared in the form a
//! server will read them, every checked address tried in turn, denials
//! that do not map the internal network, and secrets kept out of slices,
//! cookies, compressed framing, error texts and the plugin's own requests;
//! and approval rules on paths seeing every spelling the filesystem reads
//! the same way. Shared claims run through both interfaces (see
//! `egress.rs`).

use portcullis::manifest::{ApprovalEntry, HttpEntry, HttpTable, InjectEntry};
use portcullis::{CallContext, DirMode, Error, Host, Limits, PluginConfig};
use portcullis_tests::net::{Interface, TOKEN, assert_error, destination};
use portcullis_tests::{Net, on_both, plugin_path, plugin_sha};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_several_addresses_tries_each_checked_address_in_turn() {
    on_both(|net| async move {
        // `localhost` answering `::1` first, with the server on 127.0.0.1
        // only: the first address refuses the connection, the second
        // serves it.
        let resolver = net.resolver().map("localhost", &["::1", "127.0.0.1"]);
        let entry: HttpEntry = HttpTable::new(format!("http://localhost:{}", net.a()))
            .allow_private(true)
            .into();
        let host = net
            .host_with(vec![entry], Limits::default(), |b| b.resolver(resolver))
            .await;
        let out = net
            .one(
                &host,
                json!({"url": format!("http://localhost:{}/hello", net.a())}),
            )
            .await;
        assert_eq!(out["status"], 200, "{out}");
        assert_eq!(out["body"], "hello from allowed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_does_not_reveal_the_private_address_a_name_resolved_to() {
    on_both(|net| async move {
        let c = net.c();
        let host = net
            .host(
                vec![HttpEntry::from(format!("http://internal.test:{c}"))],
                Limits::default(),
            )
            .await;
        let out = net
            .one(&host, json!({"url": format!("http://internal.test:{c}/")}))
            .await;
        net.assert_denied(
            &out,
            "`internal.test` is or resolves to an address in a blocked range",
        );
        let text = out.to_string();
        assert!(!text.contains("10.0.0.7"), "{text}");
        let recorded = net.egress_records().pop().expect("a record").to_string();
        assert!(!recorded.contains("10.0.0.7"), "{recorded}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_rule_refuses_semicolons_and_encoded_separators() {
    on_both(|net| async move {
        let a = net.a();
        let entry: HttpEntry = HttpTable::new(format!("http://allowed.test:{a}/v1/public/"))
            .allow_private(true)
            .into();
        let host = net.host(vec![entry], Limits::default()).await;
        // Tomcat and Spring serve `/v1/public/..;/admin` as `/admin`.
        for path in [
            "/v1/public/..;/admin",
            "/v1/public/x;y",
            "/v1/public/..%2fadmin",
            "/v1/public/..%5cadmin",
            "/v1/public/%252e%252e/admin",
        ] {
            let out = net
                .one(
                    &host,
                    json!({"url": format!("http://allowed.test:{a}{path}")}),
                )
                .await;
            net.assert_denied(&out, "servers may read differently");
            net.assert_denied(&out, &format!("`http://allowed.test:{a}/v1/public/`"));
        }
        assert_eq!(net.allowed.hits(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_headers_are_stripped_from_requests_carrying_a_secret() {
    on_both(|net| async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = net
            .host_with_secret(
                dir.path(),
                net.bound(),
                InjectEntry::header("X-Api-Key", "{}"),
            )
            .await;
        let request = json!({
            "url": net.url("/echo"),
            "headers": [["Range", "bytes=10-14"], ["If-Range", "x"], ["X-Other", "kept"]],
        });
        let out = net.one(&host, net.with_secret(request)).await;
        assert_eq!(out["status"], 200, "{out}");
        let head = net.allowed.heads().pop().expect("a request");
        assert!(head.contains("x-api-key: "), "{head}");
        assert!(head.contains("x-other: kept"), "{head}");
        assert!(!head.contains("range:"), "{head}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_cookie_is_dropped_from_responses_to_requests_carrying_a_secret() {
    on_both(|net| async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = net
            .host_with_secret(
                dir.path(),
                destination(net.url("/cookie"), &["GET"]),
                InjectEntry::header("X-Api-Key", "{}"),
            )
            .await;
        let out = net
            .one(&host, net.with_secret(json!({"url": net.url("/cookie")})))
            .await;
        assert_eq!(out["status"], 200, "{out}");
        assert!(!out.to_string().contains("session=abc123"), "{out}");
        // Without a secret the cookie is the plugin's to see.
        let plain = net.host(vec![net.allowed_entry()], Limits::default()).await;
        let out = net.one(&plain, json!({"url": net.url("/cookie")})).await;
        assert!(out.to_string().contains("session=abc123"), "{out}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_codings_other_than_chunked_are_refused() {
    let net = Net::start(Interface::Tool).await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let out = net.one(&host, json!({"url": net.url("/te-gzip")})).await;
    assert_error(&out, "upstream", "only `chunked` is accepted");
}

/// A vault that answers at load, and during calls fails with an error
/// that quotes the value it had.
struct Chatty;

impl portcullis::SecretSource for Chatty {
    fn get(&self, request: &portcullis::SecretRequest) -> Result<portcullis::Secret, String> {
        match request.call_id {
            None => Ok(portcullis::Secret::new("token-known-at-load-0000")),
            Some(_) => Err("lease for token-known-at-load-0000 expired".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_source_error_reaches_the_plugin_scrubbed() {
    let net = Net::start(Interface::Tool).await;
    let secret = portcullis::SecretConfig::new("api", Chatty)
        .destination(net.bound())
        .inject(InjectEntry::header("X-Api-Key", "{}"));
    let host = net.host_with_secret_config(secret, |b| b).await;
    let out = net
        .one(&host, json!({"url": net.url("/echo"), "secret": "api"}))
        .await;
    assert_error(&out, "upstream", "lease for [redacted:api] expired");
    assert!(!out.to_string().contains("token-known-at-load"), "{out}");

    // What the plugin itself held (its output is scrubbed again on the way
    // out, so look in its memory): the scrubbed text, never the value.
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = portcullis::SecretConfig::new("api", Chatty)
        .destination(net.bound())
        .inject(InjectEntry::header("X-Api-Key", "{}"));
    let host = net
        .host_with_secret_config(secret, |b| b.core_dumps(dir.path()))
        .await;
    let result = host
        .call(
            "egress.send",
            &json!({
                "requests": [{"url": net.url("/echo"), "secret": "api"}],
                "then_abort": true,
            })
            .to_string(),
            &CallContext::new(),
        )
        .await;
    assert!(matches!(result, Err(Error::Crashed { .. })), "{result:?}");
    let dump = std::fs::read_dir(dir.path())
        .expect("dump dir")
        .next()
        .expect("a dump")
        .expect("entry")
        .path();
    let memories = crate::egress_secrets::memories_of(&std::fs::read(dump).expect("read"));
    assert!(
        memories
            .iter()
            .any(|m| crate::egress_secrets::holds(m, b"lease for [redacted:api] expired")),
        "the plugin got the scrubbed error"
    );
    for memory in &memories {
        assert!(
            !crate::egress_secrets::holds(memory, b"token-known-at-load-0000"),
            "the secret value is in guest memory"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_send_a_secret_value_it_learned() {
    let net = Net::start(Interface::Tool).await;
    let secret = portcullis::SecretConfig::new("api", crate::egress_secrets::Rotating)
        .destination(net.bound())
        .inject(InjectEntry::header("X-Api-Key", "{}"));
    let host = net.host_with_secret_config(secret, |b| b).await;
    // The first request teaches the call's scrubber this call's token; the
    // plugin then sends it itself, in every place and form: to the bound
    // destination too, without naming the secret.
    let value = "rotated-token-for-call-0001";
    let basic = base64(format!("user:{value}").as_bytes());
    let echo = net.url("/echo");
    let outs = net
        .send(
            &host,
            json!([
                {"url": echo, "secret": "api"},
                {"method": "POST", "url": echo, "body": format!("{{\"t\":\"{value}\"}}")},
                {"url": format!("{echo}?t={value}")},
                {"url": echo, "headers": [["X-Note", value]]},
                {"url": echo, "headers": [["X-Auth", format!("Basic {basic}")]]},
            ]),
        )
        .await;
    assert_eq!(outs[0]["status"], 200, "{outs:?}");
    for (out, part) in outs[1..].iter().zip(["body", "URL", "headers", "headers"]) {
        assert_error(
            out,
            "denied",
            &format!("the request's {part} carries the value of secret `api`"),
        );
    }
    assert_eq!(
        net.allowed.heads().len(),
        1,
        "only the host's own injection left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_carrying_a_secret_value_are_refused() {
    let net = Net::start(Interface::Tool).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = net
        .host_with_secret(
            dir.path(),
            net.bound(),
            InjectEntry::header("X-Api-Key", "{}"),
        )
        .await;
    // Raw, and JSON-escaped the way a model may write it (`\/`, `\u002b`).
    let escaped = TOKEN.replace('/', "\\/").replace('+', "\\u002b");
    for body in [
        json!({"requests": [{"url": net.url("/echo"), "body": TOKEN}]}).to_string(),
        format!(
            "{{\"requests\": [{{\"url\": \"{}\", \"body\": \"{escaped}\"}}]}}",
            net.url("/echo")
        ),
    ] {
        let err = host
            .call("egress.send", &body, &CallContext::new())
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, Error::InvalidArguments { reason, .. } if reason.contains("value of secret `api`")),
            "{err}"
        );
        assert!(!err.to_string().contains(TOKEN), "{err}");
    }
    assert_eq!(net.allowed.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_over_the_maximum_size_are_refused() {
    let net = Net::start(Interface::Tool).await;
    let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
    let big = "x".repeat(portcullis::MAX_ARGUMENT_BYTES + 1);
    let body = json!({"requests": [{"url": net.url("/echo"), "body": big}]}).to_string();
    let err = host
        .call("egress.send", &body, &CallContext::new())
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, Error::InvalidArguments { reason, .. } if reason.contains("the maximum is")),
        "{err}"
    );
    assert_eq!(net.allowed.hits(), 0);
}

/// Padded standard base64, as in Basic auth.
#[tokio::test]
async fn an_approval_rule_on_a_path_sees_every_spelling_of_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    for folder in ["in", "out"] {
        std::fs::create_dir(dir.path().join(folder)).expect("create");
    }
    // No approver: a call that asks is denied.
    let host = Host::builder()
        .plugin(
            PluginConfig::new("hostile", plugin_path("hostile"))
                .sha256(plugin_sha("hostile"))
                .dir(dir.path().join("in"), "/in", DirMode::ReadWrite)
                .dir(dir.path().join("out"), "/out", DirMode::ReadWrite)
                .approval("write", ApprovalEntry::rules([r#"/path matches "/out/*""#])),
        )
        .build()
        .await
        .expect("loads");
    let write = |path: &str| {
        let arguments = json!({ "path": path, "data": "d" }).to_string();
        let host = &host;
        async move {
            host.call("hostile.write", &arguments, &CallContext::new())
                .await
        }
    };
    write("/in/control")
        .await
        .expect("outside the rule, no one is asked");
    assert!(dir.path().join("in/control").is_file());
    for path in [
        "//out/x",
        "/./out/x",
        "/out//x",
        "out/x",
        "/../out/x",
        "/in/../out/x",
    ] {
        match write(path).await {
            Err(Error::ApprovalDenied { .. }) => {}
            other => panic!("{path}: expected an approval denial, got {other:?}"),
        }
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("out"))
            .expect("list")
            .count(),
        0,
        "nothing was written under /out"
    );
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
