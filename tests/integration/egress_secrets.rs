//! Secrets through egress: the host attaches a granted secret only to the
//! destination it is bound to, the plugin (and so the agent) never sees
//! its value, and no form of it reaches guest memory, outputs or the audit
//! log. The shared claims run through both interfaces (see `egress.rs`);
//! through `portcullis:tool/http` a request names its secret, through
//! `wasi:http` the host picks it by destination. Claims about naming a
//! secret, or about secret sources, run through `portcullis:tool/http`.

use portcullis::manifest::InjectEntry;
use portcullis::{CallContext, Error, Limits};
use portcullis_tests::net::{Interface, TOKEN, assert_error, destination};
use portcullis_tests::{Net, on_both};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_receives_the_secret_the_plugin_never_sees() {
    on_both(|net| async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = net
            .host_with_secret(
                dir.path(),
                net.bound(),
                InjectEntry::header("Authorization", "Bearer {}"),
            )
            .await;
        let out = net
            .one(&host, net.with_secret(json!({"url": net.url("/echo")})))
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
        // ...and echoed it back, but the plugin (and so the agent) sees only
        // the marker, in the body it received and in the output.
        let text = out.to_string();
        assert!(!text.contains(TOKEN), "{text}");
        assert!(text.contains("[redacted:api]"), "{text}");
        // The record names the secret, never its value.
        let egress = net.egress_records();
        assert_eq!(egress.len(), 1, "{:?}", net.records());
        assert_eq!(egress[0]["secret"], "api", "{}", egress[0]);
        // Allowed but not bound (nor named): sent without it.
        let out = net.one(&host, json!({"url": net.url("/hello")})).await;
        assert_eq!(out["status"], 200, "{out}");
        let heads = net.allowed.heads();
        assert!(
            heads.last().is_some_and(|h| !h.contains(TOKEN)),
            "{heads:?}"
        );
        let egress = net.egress_records();
        assert!(egress[1]["secret"].is_null(), "{egress:?}");
        let records = net.records();
        assert!(records.iter().all(|r| !r.contains(TOKEN)), "{records:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_is_not_sent_to_an_unbound_path_or_method() {
    on_both(|net| async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = net
            .host_with_secret(
                dir.path(),
                destination(net.url("/echo"), &["GET"]),
                InjectEntry::header("X-Api-Key", "{}"),
            )
            .await;
        // Both allowed by the allowlist, neither by the binding.
        for (method, path, denial) in [
            ("GET", "/hello", "secret `api` is not bound to GET"),
            ("POST", "/echo", "not bound to POST"),
        ] {
            let request = json!({"method": method, "url": net.url(path), "body": "{}"});
            let out = net.one(&host, net.with_secret(request)).await;
            match net.via() {
                // Named, so the request is refused...
                Interface::Tool => net.assert_denied(&out, denial),
                // ...picked by destination, so it goes out without one.
                Interface::Wasi => assert_eq!(out["status"], 200, "{out}"),
            }
        }
        assert!(
            net.allowed.heads().iter().all(|h| !h.contains(TOKEN)),
            "the secret left the host"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_cannot_set_the_injected_header_itself() {
    on_both(|net| async move {
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
                net.with_secret(json!({
                    "url": net.url("/echo"),
                    "headers": [["X-Api-Key", "chosen-by-the-plugin"]],
                })),
            )
            .await;
        net.assert_header_refused(&out, "is set by the host, not the plugin");
        // Nor without naming the secret: a plugin never writes the header
        // its credentials go in.
        let out = net
            .one(
                &host,
                json!({
                    "url": net.url("/echo"),
                    "headers": [["x-api-key", "chosen-by-the-plugin"]],
                }),
            )
            .await;
        net.assert_header_refused(
            &out,
            "header `x-api-key` carries secret `api` and is set by the host, not the plugin",
        );
        assert_eq!(net.allowed.hits(), 0);
    })
    .await;
}

// ---------------------------------------------------------------------------
// Through `portcullis:tool/http` only.

/// Every linear memory of the instance a core dump describes, rebuilt from
/// its memory and data sections (the standard core dump format).
pub(crate) fn memories_of(dump: &[u8]) -> Vec<Vec<u8>> {
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

pub(crate) fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_never_enters_guest_memory() {
    let net = Net::start(Interface::Tool).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dumps = dir.path().join("dumps");
    let file = dir.path().join("api.secret");
    std::fs::write(&file, TOKEN).expect("write secret");
    let secret = portcullis::SecretConfig::file("api", &file)
        .destination(net.bound())
        .inject(InjectEntry::header("Authorization", "Bearer {}"));
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

/// A vault that gives out a new token for every call (`token-known-at-load-0000`
/// at load, `rotated-token-for-call-NNNN` for call NNNN).
pub(crate) struct Rotating;

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
    let net = Net::start(Interface::Tool).await;
    let secret = portcullis::SecretConfig::new("api", Rotating)
        .destination(net.bound())
        .inject(InjectEntry::header("X-Api-Key", "{}"));
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
    let net = Net::start(Interface::Tool).await;
    let secret = portcullis::SecretConfig::new("api", DownDuringCalls)
        .destination(net.bound())
        .inject(InjectEntry::header("X-Api-Key", "{}"));
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
    let net = Net::start(Interface::Tool).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = net
        .host_with_secret(
            dir.path(),
            destination(net.url("/redirect"), &["GET"]),
            InjectEntry::header("Authorization", "Bearer {}"),
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
    let net = Net::start(Interface::Tool).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = net
        .host_with_secret(dir.path(), net.bound(), InjectEntry::query("key"))
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
async fn naming_a_secret_not_granted_is_denied() {
    let net = Net::start(Interface::Tool).await;
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
