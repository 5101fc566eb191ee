//! Instance slots: the pooled path serves calls and reuses its slots, the
//! host-wide cap refuses a call with a typed `busy` error after a bounded
//! wait, a component that does not fit a slot is refused at load, and the
//! on-demand fallback serves the same calls.

use portcullis::{CallContext, CancellationToken, Error, Host, InstanceAllocation, PluginConfig};
use portcullis_tests::{plugin_path, plugin_sha};
use std::time::Duration;

fn hostile() -> PluginConfig {
    PluginConfig::new("hostile", plugin_path("hostile")).sha256(plugin_sha("hostile"))
}

/// More calls than slots, one after another, all succeed: slots go back to
/// the pool when a call ends, whatever the way it ended.
#[tokio::test]
async fn pooled_slots_are_reused_across_calls() {
    let host = Host::builder()
        .max_concurrent_calls(2)
        .plugin(hostile())
        .build()
        .await
        .expect("loads");
    for _ in 0..10 {
        let out = host
            .call("hostile.counter", "{}", &CallContext::new())
            .await
            .expect("a pooled call succeeds");
        // A fresh instance every time, even from a reused slot.
        assert_eq!(out.value, serde_json::json!(1));
        let crashed = host.call("hostile.panic", "{}", &CallContext::new()).await;
        assert!(matches!(crashed, Err(Error::Crashed { .. })), "{crashed:?}");
    }
}

/// With every slot taken, a call waits the bounded time and then fails with
/// the typed `busy` error, without running; once the slot is free, calls
/// run again.
#[tokio::test]
async fn a_call_beyond_the_slots_gets_the_busy_error() {
    let host = Host::builder()
        .max_concurrent_calls(1)
        .busy_wait(Duration::from_millis(50))
        .plugin(hostile())
        .build()
        .await
        .expect("loads");
    // `sleep` holds the only slot until it is cancelled.
    let cancel = CancellationToken::new();
    let ctx = CallContext::new().cancellation(cancel.clone());
    let sleeper = {
        let host = host.clone();
        tokio::spawn(async move { host.call("hostile.sleep", "{}", &ctx).await })
    };
    // Probe until the sleeper holds the slot: a probe then gets `busy`
    // (bounded, so a host without the cap fails instead of hanging).
    let mut busy = None;
    for _ in 0..10_000 {
        match host
            .call("hostile.counter", "{}", &CallContext::new())
            .await
        {
            Err(e @ Error::Busy { .. }) => {
                busy = Some(e);
                break;
            }
            Ok(_) => tokio::task::yield_now().await,
            Err(other) => panic!("expected busy, got {other:?}"),
        }
    }
    let busy = busy.expect("a call beyond the only slot was refused as busy");
    let Error::Busy { tool, slots, .. } = &busy else {
        unreachable!()
    };
    assert_eq!((tool.as_str(), *slots), ("hostile.counter", 1));
    assert!(
        busy.hint()
            .is_some_and(|h| h.contains("max_concurrent_calls"))
    );

    cancel.cancel();
    let slept = sleeper.await.expect("joins");
    assert!(matches!(slept, Err(Error::Cancelled { .. })), "{slept:?}");
    host.call("hostile.counter", "{}", &CallContext::new())
        .await
        .expect("the slot is free again");
}

/// A component with more linear memories than one slot holds is refused
/// when it is loaded, naming the pool, not when it is first called.
#[tokio::test]
async fn a_component_that_does_not_fit_a_slot_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wat = String::from("(component (core module $m (memory 1))");
    for _ in 0..5 {
        wat.push_str(" (core instance (instantiate $m))");
    }
    wat.push(')');
    let bytes = wat::parse_str(&wat).expect("wat");
    let path = dir.path().join("many-memories.wasm");
    std::fs::write(&path, &bytes).expect("write");
    let sha = portcullis::sha256_hex(&bytes);

    let refused = Host::builder()
        .plugin(PluginConfig::new("wide", &path).sha256(&sha))
        .build()
        .await
        .expect_err("refused at load");
    assert!(
        matches!(&refused, Error::InvalidComponent { reason, .. } if reason.contains("pooling allocator")),
        "{refused}"
    );
}

/// The on-demand fallback serves the same calls, under the same cap.
#[tokio::test]
async fn on_demand_allocation_serves_calls() {
    let host = Host::builder()
        .instance_allocation(InstanceAllocation::OnDemand)
        .plugin(hostile())
        .build()
        .await
        .expect("loads");
    let out = host
        .call("hostile.counter", "{}", &CallContext::new())
        .await
        .expect("succeeds");
    assert_eq!(out.value, serde_json::json!(1));
}

/// Zero slots is a configuration error, not a host that hangs.
#[tokio::test]
async fn zero_slots_are_refused() {
    let e = Host::builder()
        .max_concurrent_calls(0)
        .plugin(hostile())
        .build()
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("max_concurrent_calls"), "{e}");
}
