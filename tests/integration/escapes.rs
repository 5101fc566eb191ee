//! A plugin can reach only its grants: every escape attempt fails inside
//! the sandbox, and nothing outside the grants is read or changed.
//!
//! Each test also runs a control call that must succeed, so a denial cannot
//! come from a broken setup instead of the sandbox.

use portcullis::{CallContext, Error, Host, ToolOutput};
use portcullis_tests::{Fixture, SECRET, limits};
use serde_json::json;

async fn call(host: &Host, tool: &str, args: serde_json::Value) -> Result<ToolOutput, Error> {
    host.call(
        &format!("hostile.{tool}"),
        &args.to_string(),
        &CallContext::new(),
    )
    .await
}

/// The attempt failed inside the sandbox (the tool saw an error) and no
/// secret came back.
fn assert_refused(result: Result<ToolOutput, Error>, attempt: &str) {
    match result {
        Err(Error::Tool { .. }) => {}
        Ok(out) => panic!("{attempt}: succeeded with {}", out.value),
        Err(other) => panic!("{attempt}: expected a tool error, got {other}"),
    }
}

async fn setup() -> (Fixture, Host) {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|_| {})).await;
    // Controls: the grants themselves work.
    let notes = call(&host, "read", json!({"path": "/ro/notes.txt"}))
        .await
        .expect("reading inside the read-only grant works");
    assert_eq!(notes.value, json!("read-only notes\n"));
    call(
        &host,
        "write",
        json!({"path": "/rw/control.txt", "data": "ok"}),
    )
    .await
    .expect("writing inside the read-write grant works");
    assert_eq!(
        std::fs::read_to_string(fixture.path("rw/control.txt")).expect("written"),
        "ok"
    );
    (fixture, host)
}

#[tokio::test]
async fn dot_dot_cannot_leave_a_grant() {
    let (fixture, host) = setup().await;
    for path in [
        "/ro/../outside/secret.txt",
        "/ro/../top-level.txt",
        "/rw/../outside/secret.txt",
        "/ro/../../../../../../etc/passwd",
    ] {
        assert_refused(call(&host, "read", json!({ "path": path })).await, path);
    }
    assert_refused(
        call(&host, "list", json!({"path": "/ro/.."})).await,
        "list /ro/..",
    );
    assert_refused(
        call(
            &host,
            "write",
            json!({"path": "/rw/../outside/secret.txt", "data": "pwned"}),
        )
        .await,
        "write /rw/../outside/secret.txt",
    );
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn absolute_paths_outside_grants_do_not_exist() {
    let (fixture, host) = setup().await;
    let outside = fixture.path("outside/secret.txt");
    for path in [
        "/etc/passwd",
        "/outside/secret.txt",
        outside.to_str().expect("utf-8"),
    ] {
        assert_refused(call(&host, "read", json!({ "path": path })).await, path);
    }
    assert_refused(call(&host, "list", json!({"path": "/"})).await, "list /");
    assert_refused(
        call(&host, "write", json!({"path": outside, "data": "pwned"})).await,
        "write host path",
    );
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn symlink_in_a_grant_pointing_outside_is_not_followed() {
    let (fixture, host) = setup().await;
    assert_refused(
        call(&host, "read", json!({"path": "/ro/link-out"})).await,
        "read /ro/link-out",
    );
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn symlink_the_plugin_creates_cannot_reach_outside() {
    let (fixture, host) = setup().await;
    let host_path = fixture.path("outside/secret.txt");
    let targets = [
        "../outside/secret.txt",
        "../ro/notes.txt",
        host_path.to_str().expect("utf-8"),
        "/etc/passwd",
    ];
    for (i, target) in targets.into_iter().enumerate() {
        let link = format!("/rw/link{i}");
        // Creating the link may or may not be refused; following it must be.
        let _ = call(&host, "symlink", json!({"from": target, "to": link})).await;
        assert_refused(call(&host, "read", json!({ "path": link })).await, &link);
        if target.contains("outside") || target.contains("ro/") {
            // Writing at the link's path may create a plain file in the
            // grant; it must never write through to the target.
            let _ = call(&host, "write", json!({"path": link, "data": "pwned"})).await;
        }
    }
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn hard_links_cannot_cross_grants() {
    let (fixture, host) = setup().await;
    // Linking a read-only file into the writable grant would let the plugin
    // write through the link.
    assert_refused(
        call(
            &host,
            "hard_link",
            json!({"from": "/ro/notes.txt", "to": "/rw/notes"}),
        )
        .await,
        "hard link ro -> rw",
    );
    // Whatever happened, writing at the link's path must not reach the
    // read-only original (checked by `assert_outside_unchanged`).
    let _ = call(
        &host,
        "write",
        json!({"path": "/rw/notes", "data": "pwned"}),
    )
    .await;
    assert_refused(
        call(
            &host,
            "hard_link",
            json!({"from": "/rw/scratch.txt", "to": "/ro/scratch"}),
        )
        .await,
        "hard link rw -> ro",
    );
    assert_refused(
        call(
            &host,
            "hard_link",
            json!({"from": "/rw/../outside/secret.txt", "to": "/rw/secret"}),
        )
        .await,
        "hard link outside -> rw",
    );
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn renames_cannot_cross_grants() {
    let (fixture, host) = setup().await;
    for (from, to) in [
        ("/ro/notes.txt", "/rw/stolen.txt"),
        ("/rw/scratch.txt", "/ro/planted.txt"),
        ("/rw/scratch.txt", "/rw/../outside/planted.txt"),
        ("/rw/../outside/secret.txt", "/rw/secret.txt"),
    ] {
        assert_refused(
            call(&host, "rename", json!({"from": from, "to": to})).await,
            &format!("rename {from} -> {to}"),
        );
    }
    assert!(
        fixture.path("rw/scratch.txt").is_file(),
        "a refused rename moved the file"
    );
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn read_only_grant_refuses_writes_truncation_and_removal() {
    let (fixture, host) = setup().await;
    assert_refused(
        call(
            &host,
            "write",
            json!({"path": "/ro/notes.txt", "data": "pwned"}),
        )
        .await,
        "overwrite",
    );
    assert_refused(
        call(
            &host,
            "write",
            json!({"path": "/ro/new.txt", "data": "planted"}),
        )
        .await,
        "create",
    );
    assert_refused(
        call(&host, "truncate", json!({"path": "/ro/notes.txt"})).await,
        "truncate",
    );
    assert_refused(
        call(&host, "remove", json!({"path": "/ro/notes.txt"})).await,
        "remove",
    );
    assert_refused(
        call(
            &host,
            "symlink",
            json!({"from": "notes.txt", "to": "/ro/planted-link"}),
        )
        .await,
        "symlink in read-only grant",
    );
    fixture.assert_outside_unchanged();
}

#[tokio::test]
async fn outputs_never_carry_the_sentinel() {
    // Belt and braces over the tests above: list every grant and read every
    // file the plugin can see; the sentinel never comes back.
    let (fixture, host) = setup().await;
    for dir in ["/ro", "/rw"] {
        let listing = call(&host, "list", json!({ "path": dir }))
            .await
            .expect("list");
        for name in listing.value.as_array().expect("names") {
            let path = format!("{dir}/{}", name.as_str().expect("name"));
            if let Ok(out) = call(&host, "read", json!({ "path": path })).await {
                assert!(
                    !out.value.to_string().contains(SECRET),
                    "{path} leaked the sentinel"
                );
            }
        }
    }
    fixture.assert_outside_unchanged();
}
