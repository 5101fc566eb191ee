//! Granted directories are opened once, at load, and never looked up by
//! path again: a folder swapped for a symlink between two calls of a
//! long-lived host is not followed.

use portcullis::{CallContext, DirMode, Host, HostBuilder, PluginConfig};
use portcullis_tests::{ApproveAll, Fixture, SECRET, plugin_path, plugin_sha};

async fn list(host: &Host, path: &str) -> Result<serde_json::Value, portcullis::Error> {
    host.call(
        "hostile.list",
        &serde_json::json!({ "path": path }).to_string(),
        &CallContext::new(),
    )
    .await
    .map(|out| out.value)
}

/// `hostile` with `granted` read-only at `/docs`, `extra` applied to the
/// builder last.
async fn hostile_granted(
    granted: &std::path::Path,
    extra: impl FnOnce(HostBuilder) -> HostBuilder,
) -> Host {
    let builder = Host::builder().approver(ApproveAll).plugin(
        PluginConfig::new("hostile", plugin_path("hostile"))
            .sha256(plugin_sha("hostile"))
            .dir(granted, "/docs", DirMode::ReadOnly),
    );
    extra(builder).build().await.expect("loads")
}

/// Between two calls, someone with write access next to the grant (another
/// plugin's read-write grant, another process) moves the granted folder
/// away and puts a symlink to a secret folder in its place. The second call
/// still sees the original folder, never the symlink's target.
#[cfg(unix)]
#[tokio::test]
async fn a_granted_folder_swapped_for_a_symlink_between_calls_is_not_followed() {
    let fixture = Fixture::new();
    let area = fixture.path("area");
    let granted = area.join("docs");
    std::fs::create_dir_all(&granted).expect("mkdir");
    std::fs::write(granted.join("original.txt"), "original").expect("write");

    let host = hostile_granted(&granted, |b| b).await;
    assert_eq!(
        list(&host, "/docs").await.expect("first call"),
        serde_json::json!(["original.txt"])
    );

    // The swap: the folder moves away, a symlink to `outside/` takes its
    // name.
    std::fs::rename(&granted, area.join("docs.moved")).expect("move away");
    std::os::unix::fs::symlink(fixture.path("outside"), &granted).expect("symlink");

    match list(&host, "/docs").await {
        Ok(listing) => assert_eq!(listing, serde_json::json!(["original.txt"])),
        Err(e) => assert!(!e.to_string().contains("secret.txt"), "{e}"),
    }
    let read = host
        .call(
            "hostile.read",
            r#"{"path": "/docs/secret.txt"}"#,
            &CallContext::new(),
        )
        .await;
    assert!(
        !matches!(&read, Ok(out) if out.value == serde_json::json!(SECRET)),
        "the second call followed the swapped-in symlink: {read:?}"
    );
}

/// The directory opened at load serves call after call: a call's handle
/// table dies with it, so nothing a call does to its descriptors reaches
/// the next.
#[cfg(unix)]
#[tokio::test]
async fn one_open_grant_serves_every_call() {
    let fixture = Fixture::new();
    let granted = fixture.path("docs");
    std::fs::create_dir(&granted).expect("mkdir");
    std::fs::write(granted.join("a.txt"), "a").expect("write");
    let host = hostile_granted(&granted, |b| b).await;
    for _ in 0..3 {
        assert_eq!(
            list(&host, "/docs").await.expect("call"),
            serde_json::json!(["a.txt"])
        );
    }
}

/// File operations run on the call's own thread by default, and on tokio's
/// blocking threads when the embedder asks (for network filesystems): the
/// grant serves reads and listings the same either way, and a multi-thread
/// runtime runs calls of both kinds side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_directories_serve_calls_in_place_and_on_blocking_threads() {
    let fixture = Fixture::new();
    let granted = fixture.path("docs");
    std::fs::create_dir(&granted).expect("mkdir");
    std::fs::write(granted.join("a.txt"), "alpha").expect("write");
    for in_place in [true, false] {
        let host = hostile_granted(&granted, |b| b.file_io_in_place(in_place)).await;
        let (a, b, c) = tokio::join!(
            list(&host, "/docs"),
            list(&host, "/docs"),
            list(&host, "/docs")
        );
        for listing in [a, b, c] {
            assert_eq!(listing.expect("call"), serde_json::json!(["a.txt"]));
        }
        let read = host
            .call(
                "hostile.read",
                r#"{"path": "/docs/a.txt"}"#,
                &CallContext::new(),
            )
            .await
            .expect("read");
        assert_eq!(
            read.value,
            serde_json::json!("alpha"),
            "in place: {in_place}"
        );
    }
}

/// Threads of this process whose name is `name`.
#[cfg(target_os = "linux")]
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .count()
}

/// File operations on grants run on the call's own thread by default: the
/// runtime polling the call starts no blocking thread for them. Asked
/// otherwise (`file_io_in_place(false)`, for network filesystems), they
/// run on its blocking threads.
#[cfg(target_os = "linux")]
#[test]
fn file_operations_on_grants_run_on_the_calls_thread_unless_asked_otherwise() {
    let fixture = Fixture::new();
    let granted = fixture.path("docs");
    std::fs::create_dir(&granted).expect("mkdir");
    std::fs::write(granted.join("a.txt"), "a").expect("write");
    for (in_place, name) in [(true, "pc-io-in-place"), (false, "pc-io-blocking")] {
        // Built on a runtime of its own, so that only the call runs on
        // the named one.
        let host = tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(hostile_granted(&granted, |b| b.file_io_in_place(in_place)));
        let named = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(name)
            .build()
            .expect("runtime");
        let listing = named.block_on(list(&host, "/docs")).expect("call");
        assert_eq!(listing, serde_json::json!(["a.txt"]));
        let blocking = threads_named(name);
        if in_place {
            assert_eq!(blocking, 0, "a blocking thread ran file operations");
        } else {
            assert!(blocking > 0, "no blocking thread ran file operations");
        }
        drop(named);
        drop(host);
    }
}
