//! Claims about `wasi:http/outgoing-handler` alone, the interface
//! components from JavaScript, Python or Go toolchains use. Every claim
//! the two HTTP interfaces share (allowlist, SSRF defence, limits,
//! secrets, audit) runs through both in `egress.rs` and
//! `egress_secrets.rs`.

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
