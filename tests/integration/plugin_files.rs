//! The `files` example plugin, every tool through the real host: byte and
//! line ranges, listing, search, stat, and writes that only a read-write
//! grant allows.

use portcullis::{DirMode, Effect, Error, Host, PluginConfig, ToolError};
use portcullis_tests::{ApproveAll, Fixture, call_value, plugin_path, plugin_sha, tool_error};
use serde_json::{Value, json};

/// `files` with `ro/` at `/ro` (read-only) and `rw/` at `/rw` (read-write).
/// The read-write grant makes every tool at least `write`, which asks for
/// approval; these tests are about the tools, so an approver says yes.
async fn files_host(fixture: &Fixture) -> Host {
    Host::builder()
        .approver(ApproveAll)
        .plugin(
            PluginConfig::new("files", plugin_path("files"))
                .sha256(plugin_sha("files"))
                .dir(fixture.path("ro"), "/ro", DirMode::ReadOnly)
                .dir(fixture.path("rw"), "/rw", DirMode::ReadWrite),
        )
        .build()
        .await
        .expect("files loads")
}

async fn call(host: &Host, tool: &str, args: Value) -> Result<Value, Error> {
    call_value(host, &format!("files.{tool}"), args).await
}

/// A fixture with `rw/lines.txt` (five numbered lines) and a small tree
/// under `rw/tree`.
fn fixture_with_files() -> Fixture {
    let fixture = Fixture::new();
    std::fs::write(
        fixture.path("rw/lines.txt"),
        "one\ntwo\nthree\nfour\nfive\n",
    )
    .expect("write");
    std::fs::create_dir_all(fixture.path("rw/tree/a/deep")).expect("mkdir");
    std::fs::write(fixture.path("rw/tree/top.md"), "# Top\nneedle here\n").expect("write");
    std::fs::write(
        fixture.path("rw/tree/a/mid.txt"),
        "before\nNeedle in a\nafter\n",
    )
    .expect("write");
    std::fs::write(fixture.path("rw/tree/a/deep/low.txt"), "no match\n").expect("write");
    fixture
}

#[tokio::test]
async fn every_tool_is_listed_with_an_honest_effect_and_schemas() {
    let fixture = Fixture::new();
    let host = Host::builder()
        .plugin(
            PluginConfig::new("files", plugin_path("files"))
                .sha256(plugin_sha("files"))
                .dir(fixture.path("ro"), "/ro", DirMode::ReadOnly),
        )
        .build()
        .await
        .expect("files loads");
    let tools = host.tools();
    let mut names: Vec<&str> = tools.iter().map(|t| t.tool.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["list_dir", "read_file", "search", "stat", "write_file"]
    );
    for tool in &tools {
        // With only a read-only grant the host shows what the plugin declares.
        let expected = if tool.tool == "write_file" {
            Effect::Write
        } else {
            Effect::Read
        };
        assert_eq!(tool.effect, expected, "{}", tool.name);
        assert!(!tool.description.is_empty(), "{}", tool.name);
        assert!(tool.title.is_some(), "{}", tool.name);
        assert_eq!(tool.input_schema["type"], json!("object"), "{}", tool.name);
        assert!(tool.output_schema.is_some(), "{}", tool.name);
    }
    let read = tools
        .iter()
        .find(|t| t.tool == "read_file")
        .expect("read_file");
    assert_eq!(read.input_schema["required"], json!(["path"]));
    assert!(
        read.input_schema["properties"]["start_line"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("1-based"))
    );
}

#[tokio::test]
async fn read_file_returns_a_byte_range() {
    let fixture = fixture_with_files();
    let host = files_host(&fixture).await;
    let out = call(
        &host,
        "read_file",
        json!({"path": "/rw/lines.txt", "offset": 4, "max_bytes": 9}),
    )
    .await
    .expect("read");
    assert_eq!(out["text"], json!("two\nthree"));
    assert_eq!(out["offset"], json!(4));
    assert_eq!(out["size"], json!(24));
    assert_eq!(out["truncated"], json!(true));
    let whole = call(&host, "read_file", json!({"path": "/ro/notes.txt"}))
        .await
        .expect("read");
    assert_eq!(whole["text"], json!("read-only notes\n"));
    assert_eq!(whole["truncated"], json!(false));
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn read_file_returns_a_line_range() {
    let fixture = fixture_with_files();
    let host = files_host(&fixture).await;
    let out = call(
        &host,
        "read_file",
        json!({"path": "/rw/lines.txt", "start_line": 2, "end_line": 4}),
    )
    .await
    .expect("read lines");
    assert_eq!(out["text"], json!("two\nthree\nfour\n"));
    assert_eq!(out["start_line"], json!(2));
    assert_eq!(out["end_line"], json!(4));
    assert_eq!(out["truncated"], json!(true));
    let tail = call(
        &host,
        "read_file",
        json!({"path": "/rw/lines.txt", "start_line": 5}),
    )
    .await
    .expect("read the last line");
    assert_eq!(tail["text"], json!("five\n"));
    assert_eq!(tail["truncated"], json!(false));
    // Bytes and lines together make no sense.
    let err = tool_error(
        call(
            &host,
            "read_file",
            json!({"path": "/rw/lines.txt", "offset": 1, "start_line": 1}),
        )
        .await,
    );
    assert!(matches!(err, ToolError::InvalidInput(_)), "{err:?}");
}

#[tokio::test]
async fn read_file_of_a_missing_file_is_not_found() {
    let fixture = Fixture::new();
    let host = files_host(&fixture).await;
    let err = tool_error(call(&host, "read_file", json!({"path": "/ro/nope.txt"})).await);
    assert_eq!(
        err,
        ToolError::NotFound("`/ro/nope.txt` does not exist".into())
    );
}

#[tokio::test]
async fn list_dir_walks_recursively_within_depth_and_entry_limits() {
    let fixture = fixture_with_files();
    let host = files_host(&fixture).await;
    let flat = call(&host, "list_dir", json!({"path": "/rw/tree"}))
        .await
        .expect("list");
    assert_eq!(
        flat["entries"],
        json!([
            {"name": "a", "kind": "dir", "size": 0},
            {"name": "top.md", "kind": "file", "size": 18},
        ])
    );
    let names = |v: &Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let all = call(
        &host,
        "list_dir",
        json!({"path": "/rw/tree", "recursive": true}),
    )
    .await
    .expect("list recursively");
    assert_eq!(
        names(&all),
        ["a", "top.md", "a/deep", "a/mid.txt", "a/deep/low.txt"]
    );
    let shallow = call(
        &host,
        "list_dir",
        json!({"path": "/rw/tree", "recursive": true, "max_depth": 2}),
    )
    .await
    .expect("list two levels");
    assert_eq!(names(&shallow), ["a", "top.md", "a/deep", "a/mid.txt"]);
    let capped = call(
        &host,
        "list_dir",
        json!({"path": "/rw/tree", "recursive": true, "max_entries": 3}),
    )
    .await
    .expect("list three entries");
    assert_eq!(names(&capped), ["a", "top.md", "a/deep"]);
    assert_eq!(capped["truncated"], json!(true));
}

#[tokio::test]
async fn search_finds_plain_text_with_context_lines() {
    let fixture = fixture_with_files();
    let host = files_host(&fixture).await;
    let out = call(
        &host,
        "search",
        json!({"path": "/rw/tree", "pattern": "needle", "case_insensitive": true, "context_lines": 1}),
    )
    .await
    .expect("search");
    assert_eq!(
        out["matches"],
        json!([
            {"path": "/rw/tree/a/mid.txt", "line": 2, "text": "Needle in a", "before": ["before"], "after": ["after"]},
            {"path": "/rw/tree/top.md", "line": 2, "text": "needle here", "before": ["# Top"]},
        ])
    );
    assert_eq!(out["files_searched"], json!(3));
    assert_eq!(out["truncated"], json!(false));
    // Plain text is not a regex: `.` matches only a dot.
    let none = call(
        &host,
        "search",
        json!({"path": "/rw/tree", "pattern": "n.edle"}),
    )
    .await
    .expect("search");
    assert_eq!(none["matches"], json!([]));
}

#[tokio::test]
async fn search_with_a_regex_respects_max_matches_and_max_file_size() {
    let fixture = fixture_with_files();
    let host = files_host(&fixture).await;
    let out = call(
        &host,
        "search",
        json!({"path": "/rw/lines.txt", "pattern": "^t", "regex": true}),
    )
    .await
    .expect("regex search");
    let lines: Vec<&Value> = out["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|m| &m["line"])
        .collect();
    assert_eq!(lines, [&json!(2), &json!(3)]);
    let capped = call(
        &host,
        "search",
        json!({"path": "/rw/lines.txt", "pattern": "e", "max_matches": 2}),
    )
    .await
    .expect("capped search");
    assert_eq!(capped["matches"].as_array().expect("matches").len(), 2);
    assert_eq!(capped["truncated"], json!(true));
    let skipped = call(
        &host,
        "search",
        json!({"path": "/rw/tree", "pattern": "needle", "max_file_size": 15}),
    )
    .await
    .expect("search small files only");
    assert_eq!(skipped["files_skipped"], json!(2));
    assert_eq!(skipped["matches"], json!([]));
    let err = tool_error(
        call(
            &host,
            "search",
            json!({"path": "/rw", "pattern": "(unclosed", "regex": true}),
        )
        .await,
    );
    assert!(
        matches!(&err, ToolError::InvalidInput(m) if m.contains("regular expression")),
        "{err:?}"
    );
}

#[tokio::test]
async fn write_file_on_a_read_only_grant_is_refused_saying_read_only() {
    let fixture = Fixture::new();
    let host = files_host(&fixture).await;
    for path in ["/ro/notes.txt", "/ro/new.txt"] {
        let err = tool_error(
            call(
                &host,
                "write_file",
                json!({"path": path, "content": "overwritten"}),
            )
            .await,
        );
        match err {
            ToolError::Denied(message) => assert!(
                message.contains("the directory is granted read-only"),
                "{message}"
            ),
            other => panic!("expected denied, got {other:?}"),
        }
    }
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn write_file_on_a_read_write_grant_writes_appends_and_creates() {
    let fixture = Fixture::new();
    let host = files_host(&fixture).await;
    let out = call(
        &host,
        "write_file",
        json!({"path": "/rw/out.txt", "content": "hello\n"}),
    )
    .await
    .expect("write");
    assert_eq!(out["bytes_written"], json!(6));
    call(
        &host,
        "write_file",
        json!({"path": "/rw/out.txt", "content": "again\n", "mode": "append"}),
    )
    .await
    .expect("append");
    assert_eq!(
        std::fs::read_to_string(fixture.path("rw/out.txt")).expect("written"),
        "hello\nagain\n"
    );
    call(
        &host,
        "write_file",
        json!({"path": "/rw/scratch.txt", "content": "replaced"}),
    )
    .await
    .expect("overwrite");
    assert_eq!(
        std::fs::read_to_string(fixture.path("rw/scratch.txt")).expect("written"),
        "replaced"
    );
    let err = tool_error(
        call(
            &host,
            "write_file",
            json!({"path": "/rw/out.txt", "content": "x", "mode": "create"}),
        )
        .await,
    );
    assert!(matches!(err, ToolError::InvalidInput(_)), "{err:?}");
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn stat_reports_kind_size_and_modification_time() {
    let fixture = Fixture::new();
    let host = files_host(&fixture).await;
    let file = call(&host, "stat", json!({"path": "/ro/notes.txt"}))
        .await
        .expect("stat a file");
    assert_eq!(file["kind"], json!("file"));
    assert_eq!(file["size"], json!(16));
    assert!(file["modified"].as_u64().is_some_and(|t| t > 1_600_000_000));
    let dir = call(&host, "stat", json!({"path": "/rw"}))
        .await
        .expect("stat a dir");
    assert_eq!(dir["kind"], json!("dir"));
    let link = call(&host, "stat", json!({"path": "/ro/link-out"}))
        .await
        .expect("stat a symlink without following it");
    assert_eq!(link["kind"], json!("symlink"));
    let err = tool_error(call(&host, "stat", json!({"path": "/ro/missing"})).await);
    assert!(matches!(err, ToolError::NotFound(_)), "{err:?}");
}
