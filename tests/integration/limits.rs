//! Runaway code is stopped by the right limit, with a typed error, and the
//! host serves the next call.

use portcullis::{CallContext, Error, Host, Limit};
use portcullis_tests::{Fixture, limits};
use std::time::Duration;

async fn call(host: &Host, tool: &str, args: &str) -> Result<portcullis::ToolOutput, Error> {
    host.call(tool, args, &CallContext::new()).await
}

/// After any failure, the same host still serves a normal call.
async fn assert_next_call_succeeds(host: &Host) {
    let out = call(host, "hostile.counter", "{}")
        .await
        .expect("the next call succeeds");
    assert_eq!(out.value, serde_json::json!(1));
}

fn expect_limit(result: Result<portcullis::ToolOutput, Error>, limit: Limit) -> Error {
    match result {
        Err(e) if e.limit() == Some(limit) => e,
        other => panic!("expected the {limit} limit, got {other:?}"),
    }
}

#[tokio::test]
async fn cpu_loop_is_stopped_by_the_fuel_limit() {
    let fixture = Fixture::new();
    let host = fixture
        .hostile(limits(|l| {
            l.fuel = 20_000_000;
            l.timeout = Duration::from_secs(60);
        }))
        .await;
    let e = expect_limit(call(&host, "hostile.spin", "{}").await, Limit::Fuel);
    assert!(
        e.hint().is_some_and(|h| h.contains("limits.fuel")),
        "{:?}",
        e.hint()
    );
    assert_next_call_succeeds(&host).await;
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn cpu_loop_is_stopped_by_the_epoch_deadline() {
    let fixture = Fixture::new();
    let host = fixture
        .hostile(limits(|l| {
            l.fuel = 1_000_000_000_000;
            l.timeout = Duration::from_millis(300);
        }))
        .await;
    expect_limit(call(&host, "hostile.spin", "{}").await, Limit::Time);
    assert_next_call_succeeds(&host).await;
}

#[tokio::test]
async fn guest_sleeping_in_a_host_call_is_stopped_by_the_time_limit() {
    let fixture = Fixture::new();
    let host = fixture
        .hostile(limits(|l| l.timeout = Duration::from_millis(300)))
        .await;
    let e = expect_limit(call(&host, "hostile.sleep", "{}").await, Limit::Time);
    assert!(
        e.hint().is_some_and(|h| h.contains("limits.timeout")),
        "{:?}",
        e.hint()
    );
    assert_next_call_succeeds(&host).await;
}

#[tokio::test]
async fn memory_bomb_is_stopped_by_the_memory_limit() {
    let fixture = Fixture::new();
    let host = fixture
        .hostile(limits(|l| {
            l.memory = 16 << 20;
            l.timeout = Duration::from_secs(60);
        }))
        .await;
    expect_limit(call(&host, "hostile.grow", "{}").await, Limit::Memory);
    assert_next_call_succeeds(&host).await;
}

#[tokio::test]
async fn oversized_output_is_refused_not_truncated() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|l| l.output = 4096)).await;
    let e = expect_limit(
        call(&host, "hostile.big_output", r#"{"bytes": 10000}"#).await,
        Limit::Output,
    );
    assert!(e.to_string().contains("4096"), "{e}");
    // Just under the cap passes whole (the JSON string adds two quotes).
    let out = call(&host, "hostile.big_output", r#"{"bytes": 4094}"#)
        .await
        .expect("output at the cap passes");
    assert_eq!(out.value.as_str().map(str::len), Some(4094));
}

#[tokio::test]
async fn an_output_over_every_limit_is_refused_before_it_is_copied() {
    let fixture = Fixture::new();
    let host = fixture
        .hostile(limits(|l| {
            // Room for the guest to build a 64 MiB output (and its JSON
            // copy): only the output limit may stop it.
            l.memory = 768 << 20;
            l.fuel = 50_000_000_000;
            l.timeout = Duration::from_secs(120);
        }))
        .await;
    let (result, largest) = crate::allocations::largest_allocation_during(call(
        &host,
        "hostile.big_output",
        &format!(r#"{{"bytes": {}}}"#, 64 << 20),
    ))
    .await;
    let e = expect_limit(result, Limit::Output);
    assert!(
        e.to_string().contains("1048576"),
        "names the output limit: {e}"
    );
    // Refused from its length alone: the host never held a copy of it.
    assert!(
        largest < 4 << 20,
        "the host allocated {largest} bytes in one piece while refusing the output"
    );
    assert_next_call_succeeds(&host).await;
}

#[tokio::test]
async fn stdout_flood_is_captured_capped_and_counted_not_an_error() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|l| l.stdio = 1024)).await;
    let out = call(&host, "hostile.flood_stdout", r#"{"bytes": 100000}"#)
        .await
        .expect("a flood is not an error by itself");
    assert_eq!(out.value, serde_json::json!("flooded"));
    assert_eq!(out.stdout.kept.len(), 1024);
    assert_eq!(out.stdout.discarded, 100_000 - 1024);
    assert!(out.stdout.kept.iter().all(|b| *b == b'A'));
    assert_eq!(out.stderr.total(), 0);
}

#[tokio::test]
async fn stderr_flood_is_captured_capped_and_counted_not_an_error() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|l| l.stdio = 2048)).await;
    let out = call(&host, "hostile.flood_stderr", r#"{"bytes": 50000}"#)
        .await
        .expect("a flood is not an error by itself");
    assert_eq!(out.stderr.kept.len(), 2048);
    assert_eq!(out.stderr.discarded, 50_000 - 2048);
    assert_eq!(out.stdout.total(), 0);
}

#[tokio::test]
async fn log_flood_is_capped_and_counted() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|_| {})).await;
    let out = call(&host, "hostile.log_flood", r#"{"bytes": 1000}"#)
        .await
        .expect("a log flood is not an error");
    assert_eq!(out.logs.len() as u64 + out.logs_dropped, 1000);
    assert!(out.logs_dropped > 0, "the log cap did not apply");
    assert_eq!(out.logs[0].message, "message 0");
}

#[tokio::test]
async fn deep_recursion_is_a_typed_crash() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|_| {})).await;
    match call(&host, "hostile.recurse", "{}").await {
        Err(Error::Crashed { reason, .. }) => {
            assert!(reason.contains("stack overflow"), "{reason}")
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    assert_next_call_succeeds(&host).await;
}

#[tokio::test]
async fn hoarding_open_handles_hits_the_fixed_resources_cap() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|_| {})).await;
    let error = expect_limit(
        call(&host, "hostile.hoard", r#"{"path": "/ro/notes.txt"}"#).await,
        Limit::Resources,
    );
    assert!(error.to_string().contains("open handles"), "{error}");
    // No manifest setting raises it, and the hint says so.
    let hint = error.hint().expect("a hint");
    assert!(hint.contains("fixed"), "{hint}");
    assert_next_call_succeeds(&host).await;
}

#[tokio::test]
async fn panic_is_a_typed_crash() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|_| {})).await;
    match call(&host, "hostile.panic", "{}").await {
        Err(Error::Crashed { .. }) => {}
        other => panic!("expected a crash, got {other:?}"),
    }
    assert_next_call_succeeds(&host).await;
}

#[tokio::test]
async fn exit_is_a_typed_crash() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|_| {})).await;
    match call(&host, "hostile.exit", "{}").await {
        // WASI 0.2 exit carries only success or failure.
        Err(Error::Crashed { reason, .. }) => assert!(reason.contains("exited"), "{reason}"),
        other => panic!("expected a crash, got {other:?}"),
    }
    assert_next_call_succeeds(&host).await;
}

#[tokio::test]
async fn cancellation_stops_a_call() {
    let fixture = Fixture::new();
    let host = fixture
        .hostile(limits(|l| l.timeout = Duration::from_secs(60)))
        .await;
    let token = portcullis::CancellationToken::new();
    let ctx = CallContext::new().cancellation(token.clone());
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        token.cancel();
    });
    match host.call("hostile.sleep", "{}", &ctx).await {
        Err(Error::Cancelled { tool }) => assert_eq!(tool, "hostile.sleep"),
        other => panic!("expected cancellation, got {other:?}"),
    }
    canceller.await.expect("canceller");
    assert_next_call_succeeds(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_call_does_not_starve_other_calls() {
    let fixture = Fixture::new();
    let host = fixture
        .hostile(limits(|l| {
            l.fuel = 1_000_000_000_000;
            l.timeout = Duration::from_secs(120);
        }))
        .await;
    // Two spinning calls on a two-thread runtime: without yielding on epoch
    // ticks they would hold both threads until their deadline.
    let token = portcullis::CancellationToken::new();
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let host = host.clone();
            let ctx = CallContext::new().cancellation(token.clone());
            tokio::spawn(async move { host.call("hostile.spin", "{}", &ctx).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Spawned, so it must run on one of the two workers the spinners hold.
    let other = host.clone();
    let counter = tokio::spawn(async move { call(&other, "hostile.counter", "{}").await })
        .await
        .expect("join")
        .expect("served");
    assert_eq!(counter.value, serde_json::json!(1));
    assert!(
        spinners.iter().all(|s| !s.is_finished()),
        "the spinners should still be running when the other call is served"
    );
    token.cancel();
    for s in spinners {
        assert!(matches!(
            s.await.expect("join"),
            Err(Error::Cancelled { .. })
        ));
    }
}

#[tokio::test]
async fn output_breaking_its_declared_schema_is_refused() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|_| {})).await;
    let tool = host
        .tools()
        .into_iter()
        .find(|t| t.name == "hostile.lie")
        .expect("lie");
    assert!(
        tool.output_schema.is_some(),
        "the tool declares an output schema"
    );
    match call(&host, "hostile.lie", "{}").await {
        Err(Error::InvalidOutput { reason, .. }) => {
            assert!(reason.contains("promised"), "{reason}");
        }
        other => panic!("expected invalid output, got {other:?}"),
    }
    assert_next_call_succeeds(&host).await;
}

#[tokio::test]
async fn core_dumps_go_only_to_a_private_directory_and_name_no_host_path() {
    use std::os::unix::fs::PermissionsExt as _;
    let hostile = || {
        portcullis::PluginConfig::new("hostile", portcullis_tests::plugin_path("hostile"))
            .sha256(portcullis_tests::plugin_sha("hostile"))
    };
    let dir = tempfile::tempdir().expect("temp dir");

    // A directory others can write is refused, and left as it was.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let error = Host::builder()
        .core_dumps(&shared)
        .plugin(hostile())
        .build()
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("can be written by other users"),
        "{error}"
    );
    let mode = std::fs::metadata(&shared)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o777, "the mode was changed");

    // An existing private-enough directory keeps its mode; a new one is 0700.
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let fresh = dir.path().join("new/dumps");
    for (target, expected) in [(&existing, 0o755), (&fresh, 0o700)] {
        let host = Host::builder()
            .core_dumps(target)
            .plugin(hostile())
            .build()
            .await
            .expect("loads");
        let mode = std::fs::metadata(target)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, expected, "{}", target.display());
        let error = call(&host, "hostile.panic", "{}")
            .await
            .expect_err("crashes");
        let text = error.to_string();
        assert!(text.contains("(core dump: hostile-"), "{text}");
        assert!(!text.contains(&*dir.path().to_string_lossy()), "{text}");
        assert_eq!(std::fs::read_dir(target).expect("list").count(), 1);
    }
}
