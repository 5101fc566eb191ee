//! The disk budget: what one call may write and create through read-write
//! grants (`limits.disk_write`, `limits.disk_files`) is bounded, with a
//! typed `disk` limit error, and read-only grants do not notice it.

use portcullis::{CallContext, Error, FileSink, Host, Limit};
use portcullis_tests::{ApproveAll, Fixture, audit_records, limits, plugin_path, plugin_sha};

async fn call(
    host: &Host,
    tool: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, Error> {
    host.call(tool, &args.to_string(), &CallContext::new())
        .await
        .map(|out| out.value)
}

fn expect_disk(result: Result<serde_json::Value, Error>) -> Error {
    match result {
        Err(e) if e.limit() == Some(Limit::Disk) => e,
        other => panic!("expected the disk limit, got {other:?}"),
    }
}

/// The budget of these tests: smaller than the plugin's 300,000-byte write,
/// larger than one 64 KiB chunk of wasmtime-wasi's file streams.
const BUDGET: u64 = 100_000;

#[tokio::test]
async fn a_write_past_the_disk_budget_gets_the_disk_limit_and_the_file_stops_at_the_budget() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let host = Host::builder()
        .approver(ApproveAll)
        .plugin(
            portcullis::PluginConfig::new("hostile", plugin_path("hostile"))
                .sha256(plugin_sha("hostile"))
                .dir(fixture.path("rw"), "/rw", portcullis::DirMode::ReadWrite)
                .limits(limits(|l| l.disk_write = BUDGET)),
        )
        .audit(FileSink::open(&log).expect("open"))
        .build()
        .await
        .expect("loads");
    let data = "x".repeat(300_000);
    let e = expect_disk(
        call(
            &host,
            "hostile.write",
            serde_json::json!({ "path": "/rw/big.txt", "data": data }),
        )
        .await,
    );
    let text = e.to_string();
    assert!(text.contains("exceeded its disk limit"), "{text}");
    assert!(
        text.contains(&format!("the limit is {BUDGET} bytes")),
        "{text}"
    );
    assert!(
        e.hint().is_some_and(|h| h.contains("limits.disk_write")),
        "{:?}",
        e.hint()
    );
    // The write that would pass the budget did not happen: the file holds
    // at most the budget, and all but the last refused chunk of it.
    let written = std::fs::metadata(fixture.path("rw/big.txt"))
        .expect("the file was created")
        .len();
    assert!(written <= BUDGET, "{written} bytes written");
    assert!(
        written + 64 * 1024 >= BUDGET,
        "only {written} bytes written"
    );

    let records = audit_records(&log);
    let end = records.last().expect("records");
    assert_eq!(end["event"], "call_ended");
    assert_eq!(end["outcome"], "limit");
    assert_eq!(end["limit"], "disk");

    // The budget is per call: the next call writes again.
    call(
        &host,
        "hostile.write",
        serde_json::json!({ "path": "/rw/small.txt", "data": "ok" }),
    )
    .await
    .expect("the next call writes");
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn writes_under_the_disk_budget_succeed() {
    let fixture = Fixture::new();
    let host = fixture
        .hostile(limits(|l| {
            l.disk_write = BUDGET;
            l.disk_files = 1;
        }))
        .await;
    let data = "y".repeat(90_000);
    let out = call(
        &host,
        "hostile.write",
        serde_json::json!({ "path": "/rw/fits.txt", "data": data }),
    )
    .await
    .expect("a write under the budget succeeds");
    assert_eq!(out, serde_json::json!("written"));
    assert_eq!(
        std::fs::read_to_string(fixture.path("rw/fits.txt")).expect("read"),
        data
    );
}

#[tokio::test]
async fn creating_past_the_file_budget_gets_the_disk_limit() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|l| l.disk_files = 0)).await;
    let e = expect_disk(
        call(
            &host,
            "hostile.write",
            serde_json::json!({ "path": "/rw/new.txt", "data": "new" }),
        )
        .await,
    );
    assert!(e.to_string().contains("create more than 0 files"), "{e}");
    assert!(!fixture.path("rw/new.txt").exists());
    for (tool, to) in [
        ("hostile.symlink", "/rw/link"),
        ("hostile.hard_link", "/rw/hard"),
    ] {
        expect_disk(
            call(
                &host,
                tool,
                serde_json::json!({ "from": "/rw/scratch.txt", "to": to }),
            )
            .await,
        );
    }
    assert!(std::fs::symlink_metadata(fixture.path("rw/link")).is_err());
    assert!(!fixture.path("rw/hard").exists());
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn read_only_grants_are_unaffected_by_the_disk_budget() {
    let fixture = Fixture::new();
    let host = fixture
        .hostile(limits(|l| {
            l.disk_write = 0;
            l.disk_files = 0;
        }))
        .await;
    let notes = call(
        &host,
        "hostile.read",
        serde_json::json!({ "path": "/ro/notes.txt" }),
    )
    .await
    .expect("reading needs no budget");
    assert_eq!(notes, serde_json::json!("read-only notes\n"));
    call(&host, "hostile.list", serde_json::json!({ "path": "/ro" }))
        .await
        .expect("listing needs no budget");
    // A write to the read-only grant is refused as before (a tool error
    // from the filesystem), not as the disk limit.
    let refused = call(
        &host,
        "hostile.write",
        serde_json::json!({ "path": "/ro/notes.txt", "data": "changed" }),
    )
    .await;
    assert!(
        matches!(refused, Err(Error::Tool { .. })),
        "expected the filesystem's refusal, got {refused:?}"
    );
    fixture.assert_outside_unchanged();
}

#[test]
fn disk_limits_outside_their_range_are_refused() {
    let manifest = portcullis::manifest::Manifest::parse(
        r#"
[plugins.a]
source = "a.wasm"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[plugins.a.limits]
disk_write = "17 GiB"
"#,
        std::path::Path::new("m.toml"),
    )
    .expect("parses");
    let e = portcullis::policy::from_manifest(&manifest, std::path::Path::new("m.toml"))
        .expect_err("refused");
    assert!(
        e.to_string()
            .contains("`limits.disk_write` must be between 0 and 16 GiB"),
        "{e}"
    );
}
