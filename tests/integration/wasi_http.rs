//! Claims about `wasi:http/outgoing-handler` alone, the interface
//! components from JavaScript, Python or Go toolchains use. Every claim
//! the two HTTP interfaces share (allowlist, SSRF defence, limits,
//! secrets, audit) runs through both in `egress.rs` and
//! `egress_secrets.rs`.

use portcullis::{CallContext, Error};
use portcullis_tests::net::assert_code;
use portcullis_tests::{Interface, Net, limits};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_http_guest_may_shorten_the_timeout() {
    let net = Net::start(Interface::Wasi).await;
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
async fn a_wasi_http_fields_resource_holds_at_most_64_kib_of_headers() {
    let net = Net::start(Interface::Wasi).await;
    let host = net.host(vec![net.allowed_entry()], limits(|_| {})).await;
    // Eight headers of 9 KiB: 72 KiB, past what one `fields` resource may
    // hold in host memory (4 x the gate's 16 KiB). The guest cannot even
    // build them: the call stops there, and nothing is sent.
    let headers: Vec<(String, String)> = (0..8)
        .map(|i| (format!("x-big{i}"), "v".repeat(9 * 1024)))
        .collect();
    let arguments = json!({"requests": [{"url": net.url("/hello"), "headers": headers}]});
    let result = host
        .call("wasihttp.send", &arguments.to_string(), &CallContext::new())
        .await;
    match result {
        Err(Error::Crashed { reason, .. }) => {
            assert!(
                reason.contains("total size of fields exceeds limit"),
                "{reason}"
            );
        }
        other => panic!("expected the call to stop at the fields limit, got {other:?}"),
    }
    assert_eq!(net.allowed.hits(), 0, "nothing was sent");
}
