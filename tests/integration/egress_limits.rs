//! The egress gate's limits, each claim run through both HTTP interfaces
//! (see `egress.rs`): response size (and decompressed size), the upstream
//! deadline, and the number, body and headers of a call's requests. An
//! exhausted limit is the plugin's error to handle, and on the audit
//! record.

use portcullis::manifest::HttpTable;
use portcullis::{CallContext, Error, Limits};
use portcullis_tests::net::{Interface, assert_code, assert_error};
use portcullis_tests::{Net, limits, on_both};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_is_too_large() {
    on_both(|net| async move {
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
            net.assert_refused(
                &out,
                "too_large",
                "HttpResponseBodySize",
                "larger than 1048576 bytes",
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bomb_stops_at_the_response_limit() {
    on_both(|net| async move {
        let host = net
            .host(
                vec![net.allowed_entry()],
                limits(|l| l.http_response = 1 << 20),
            )
            .await;
        let out = net.one(&host, json!({"url": net.url("/bomb")})).await;
        net.assert_refused(
            &out,
            "too_large",
            "HttpResponseBodySize",
            "decompresses to more than 1048576 bytes",
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_drip_response_times_out_at_the_hosts_limit() {
    on_both(|net| async move {
        let host = net
            .host(
                vec![net.allowed_entry()],
                limits(|l| l.http_timeout = Duration::from_millis(500)),
            )
            .await;
        let mut request = json!({"url": net.url("/drip")});
        if net.via() == Interface::Wasi {
            // The guest asks for a minute; the host's half second wins.
            request["first_byte_timeout_ms"] = json!(60_000);
            request["connect_timeout_ms"] = json!(60_000);
        }
        let started = Instant::now();
        let out = net.one(&host, request).await;
        net.assert_refused(
            &out,
            "timeout",
            "HttpResponseTimeout",
            "did not answer completely",
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_count_limit_is_enforced() {
    on_both(|net| async move {
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
            match net.via() {
                Interface::Tool => assert_error(out, "too_many_requests", "the limit is 3"),
                Interface::Wasi => assert_code(out, "ConnectionLimitReached"),
            }
        }
        // Every attempt is on the record, the refused ones too.
        let records = net.egress_records();
        assert_eq!(records.len(), 5, "{records:?}");
        assert!(
            records[3..].iter().all(|r| r["allowed"] == false
                && r["reason"]
                    .as_str()
                    .is_some_and(|m| m.contains("the limit is 3"))),
            "{records:?}"
        );
        assert_eq!(
            net.allowed.hits(),
            3,
            "only the requests within the limits left"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_limit_is_enforced() {
    on_both(|net| async move {
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
        let url = net.url("/hello");
        // A small body on a GET, and one a guest must stream in many
        // writes.
        for request in [
            json!({"url": url, "body": "x".repeat(100)}),
            json!({"method": "POST", "url": url, "body": "x".repeat(100_000)}),
        ] {
            let out = net.one(&host, request).await;
            net.assert_refused(
                &out,
                "invalid_request",
                "InternalError(Some(\"the request body is over the limit of 10 bytes",
                "the request body is over the limit of 10 bytes",
            );
        }
        assert_eq!(net.allowed.hits(), 0, "no oversized body was sent");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_header_limits_are_enforced() {
    on_both(|net| async move {
        let host = net.host(vec![net.allowed_entry()], Limits::default()).await;
        let url = net.url("/hello");
        let headers: Vec<(String, String)> =
            (0..65).map(|i| (format!("x-h{i}"), "v".into())).collect();
        let out = net
            .one(&host, json!({"url": url, "headers": headers}))
            .await;
        net.assert_refused(
            &out,
            "invalid_request",
            "InternalError",
            "headers; the limit is 64",
        );
        // 2 headers of 9 KiB: few, but over the 16 KiB of names and values.
        let headers: Vec<(String, String)> = (0..2)
            .map(|i| (format!("x-big{i}"), "v".repeat(9 * 1024)))
            .collect();
        let out = net
            .one(&host, json!({"url": url, "headers": headers}))
            .await;
        net.assert_refused(
            &out,
            "invalid_request",
            "InternalError",
            "the limit is 16384 bytes",
        );
        assert_eq!(net.allowed.hits(), 0, "no request over the limits left");
    })
    .await;
}

// ---------------------------------------------------------------------------
// Through `portcullis:tool/http` only.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_drip_cannot_outlive_the_call() {
    let net = Net::start(Interface::Tool).await;
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
    let net = Net::start(Interface::Tool).await;
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
    // Written before it left: `egress_sent`; its outcome never came.
    let records: Vec<serde_json::Value> = net
        .records()
        .iter()
        .map(|line| serde_json::from_str(line).expect("a JSON record"))
        .collect();
    let sent: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "egress_sent")
        .collect();
    assert_eq!(sent.len(), 1, "{records:?}");
    assert_eq!(sent[0]["destination"], net.url("/drip"));
    assert_eq!(sent[0]["request"], 1);
    assert!(net.egress_records().is_empty(), "{records:?}");
    let end = records.last().expect("records");
    assert_eq!(end["event"], "call_ended", "{records:?}");
    assert_eq!(end["outcome"], "cancelled", "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_list_over_the_transfer_bound_is_refused_before_the_host_copies_it() {
    // `portcullis:tool/http` hands the host its header list in one piece.
    let net = Net::start(Interface::Tool).await;
    let limits = limits(|l| {
        l.output = 32 << 10;
        l.http_request_body = 32 << 10;
    });
    let host = net.host(vec![net.allowed_entry()], limits).await;
    // 160 KiB of header values: over the 96 KiB (32 KiB + 64 KiB of slack)
    // this plugin may hand the host at once, so wasmtime refuses the list
    // from its lengths, before the gate (whose own 64-header cap would
    // answer with an `invalid_request` the plugin could handle) sees it.
    let headers: Vec<(String, String)> = (0..160)
        .map(|i| (format!("x-h{i}"), "v".repeat(1024)))
        .collect();
    let requests = json!([{ "url": net.url("/hello"), "headers": headers }]);
    let result = host
        .call(
            "egress.send",
            &json!({ "requests": requests }).to_string(),
            &CallContext::new(),
        )
        .await;
    match result {
        Err(e) if e.limit() == Some(portcullis::Limit::Output) => {
            assert!(e.to_string().contains("98304 bytes at once"), "{e}");
        }
        other => panic!("expected the transfer to be refused, got {other:?}"),
    }
    assert_eq!(net.allowed.hits(), 0, "nothing was sent");
}
