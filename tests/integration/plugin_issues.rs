//! The REST example (`plugins/issues`) against a real loopback issue
//! tracker (`portcullis_tests::tracker`): the tracker checks `Authorization: Bearer TOKEN`
//! (401 without it), keeps issues in memory and records every request it
//! gets. The plugin names secret `tracker` on every request; the host
//! attaches the value only for the destination it is bound to
//! (`http://127.0.0.1:PORT/api/v1`), and scrubs it from everything that
//! comes back.

use portcullis::{CallContext, Effect, Error, FileSink, ToolError};
use portcullis_tests::net::Canary;
use portcullis_tests::tracker::{
    STANDARD, TOKEN, Tracker, URL_SAFE, Vault, approving, base64, builder,
};
use portcullis_tests::{
    ApproveAll, assert_no_secret, audit_records, call_value as call, secret_forms, tool_error,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers (the host and the vault are in `portcullis_tests::tracker`).

fn denied(result: Result<Value, Error>) -> String {
    match tool_error(result) {
        ToolError::Denied(message) => message,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn titles(list: &Value) -> Vec<&str> {
    list["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| i["title"].as_str().expect("title"))
        .collect()
}

fn assert_clean(what: &str, text: &str) {
    // The forms looked for do catch what the tracker echoes.
    let echoed = [
        TOKEN.to_string(),
        base64(TOKEN.as_bytes(), STANDARD),
        base64(format!("user:{TOKEN}").as_bytes(), STANDARD),
        base64(format!("u:{TOKEN}").as_bytes(), URL_SAFE),
    ];
    for echo in echoed {
        assert!(
            secret_forms(TOKEN)
                .iter()
                .any(|f| echo.as_bytes().windows(f.len()).any(|w| w == f.as_slice())),
            "{echo}"
        );
    }
    assert_no_secret(what, text.as_bytes(), TOKEN);
}

// ---------------------------------------------------------------------------
// The claims.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_example_authenticates_with_the_bound_secret() {
    let tracker = Tracker::start(false).await;
    let vault = Vault::new(TOKEN);
    let host = approving(&tracker, &vault).await;
    let base = tracker.base_url();

    let empty = call(&host, "issues.list", json!({"base_url": base}))
        .await
        .expect("list runs");
    assert_eq!(empty, json!({"issues": [], "count": 0}));

    let created = call(
        &host,
        "issues.create",
        json!({"title": "Printer on fire", "body": "Third floor.", "base_url": base}),
    )
    .await
    .expect("create runs");
    assert_eq!(
        created,
        json!({"id": "1", "title": "Printer on fire", "state": "open", "body": "Third floor."})
    );
    call(
        &host,
        "issues.create",
        json!({"title": "Coffee machine empty", "base_url": format!("{base}/")}),
    )
    .await
    .expect("create runs (a trailing slash on base_url is fine)");

    let listed = call(
        &host,
        "issues.list",
        json!({"base_url": base, "state": "open", "limit": 5}),
    )
    .await
    .expect("list runs");
    assert_eq!(listed["count"], 2, "{listed}");
    assert_eq!(titles(&listed), ["Printer on fire", "Coffee machine empty"]);
    assert_eq!(listed["issues"][1]["id"], "2", "{listed}");
    let one = call(&host, "issues.list", json!({"base_url": base, "limit": 1}))
        .await
        .expect("list runs");
    assert_eq!(titles(&one), ["Printer on fire"]);
    let closed = call(
        &host,
        "issues.list",
        json!({"base_url": base, "state": "closed"}),
    )
    .await
    .expect("list runs");
    assert_eq!(closed["count"], 0, "{closed}");

    let deleted = call(&host, "issues.delete", json!({"id": "1", "base_url": base}))
        .await
        .expect("delete runs (approved)");
    assert_eq!(deleted, json!({"id": "1", "deleted": true}));
    assert_eq!(tracker.titles(), ["Coffee machine empty"]);

    // What the tracker received: every request carried the credential the
    // host attached, and the requests the tools are documented to make.
    let seen = tracker.seen();
    let requests: Vec<String> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.target))
        .collect();
    assert_eq!(
        requests,
        [
            "GET /api/v1/issues?limit=20",
            "POST /api/v1/issues",
            "POST /api/v1/issues",
            "GET /api/v1/issues?limit=5&state=open",
            "GET /api/v1/issues?limit=1",
            "GET /api/v1/issues?limit=20&state=closed",
            "DELETE /api/v1/issues/1",
        ]
    );
    for s in &seen {
        assert_eq!(
            s.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{s:?}"
        );
    }
    assert_eq!(seen[1].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&seen[1].body).expect("JSON body"),
        json!({"title": "Printer on fire", "body": "Third floor."})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&seen[2].body).expect("JSON body"),
        json!({"title": "Coffee machine empty"})
    );
    // The host asked the vault for the value once at load and once for
    // each request, naming the tool it was for.
    assert_eq!(
        vault.asked_for(),
        [
            "issues.list",
            "issues.create",
            "issues.create",
            "issues.list",
            "issues.list",
            "issues.list",
            "issues.delete",
        ]
    );
    // The plugin's tools name the secret; the agent sees that, never a value.
    for tool in host.tools() {
        assert_eq!(tool.grants.secrets, ["tracker"], "{}", tool.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_the_tracker_rejects_is_a_denial() {
    let tracker = Tracker::start(false).await;
    let vault = Vault::new("not-the-tracker-token");
    let host = approving(&tracker, &vault).await;
    let message = denied(
        call(
            &host,
            "issues.list",
            json!({"base_url": tracker.base_url()}),
        )
        .await,
    );
    assert!(
        message.contains("the tracker refused the credential (401: bad credentials)"),
        "{message}"
    );
    assert!(message.contains("secret `tracker`"), "{message}");
    // It was sent, and it was the wrong one.
    let seen = tracker.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Bearer not-the-tracker-token")
    );
    assert!(tracker.titles().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_failures_become_tool_errors_that_say_what_happened() {
    let tracker = Tracker::start(false).await;
    let host = approving(&tracker, &Vault::new(TOKEN)).await;
    let base = tracker.base_url();

    let missing = tool_error(
        call(
            &host,
            "issues.delete",
            json!({"id": "77", "base_url": base}),
        )
        .await,
    );
    match &missing {
        ToolError::NotFound(m) => {
            assert!(m.contains("/api/v1/issues/77"), "{m}");
            assert!(m.contains("404: no issue 77"), "{m}");
        }
        other => panic!("expected not found, got {other:?}"),
    }

    let failed = tool_error(
        call(
            &host,
            "issues.create",
            json!({"title": "boom", "base_url": base}),
        )
        .await,
    );
    match &failed {
        ToolError::Internal(m) => {
            assert!(
                m.starts_with("the tracker answered 500: the store failed"),
                "{m}"
            );
        }
        other => panic!("expected an internal error, got {other:?}"),
    }

    // A base_url on the tracker but outside the API: the secret is bound
    // to the API only, so the host refuses before anything is sent.
    let before = tracker.connections();
    let outside = denied(
        call(
            &host,
            "issues.list",
            json!({"base_url": format!("http://127.0.0.1:{}/admin", tracker.port())}),
        )
        .await,
    );
    assert!(
        outside.contains("secret `tracker` is not bound to GET"),
        "{outside}"
    );
    assert_eq!(tracker.connections(), before, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_never_appears_in_output_logs_audit_or_errors() {
    let tracker = Tracker::start(true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.jsonl");
    let host = builder(&tracker, &[tracker.port()], &Vault::new(TOKEN))
        .approver(ApproveAll)
        .audit(FileSink::open(&log).expect("open log"))
        .build()
        .await
        .expect("loads");
    let base = tracker.base_url();

    // The tracker echoes the credential in the body (raw, base64, hex) and
    // in two headers; the plugin passes the body on and logs the request
    // id header.
    let created = host
        .call(
            "issues.create",
            &json!({"title": "Leaky", "body": "It echoes.", "base_url": base}).to_string(),
            &CallContext::new(),
        )
        .await
        .expect("create runs");
    let body = created.value["body"].as_str().expect("body");
    // The echo reached the output, scrubbed in each form. (The base64
    // form may keep its last character and padding, which encode at most
    // the low bits of the token's last byte.)
    assert!(
        body.starts_with(
            "It echoes.\n\nreported with Bearer [redacted:tracker]; b64 [redacted:tracker]"
        ),
        "{body}"
    );
    assert!(body.ends_with("; hex [redacted:tracker]"), "{body}");
    assert_clean("the output", &created.value.to_string());
    assert_clean("the rendering", &created.render_for_model());
    let logs: Vec<&str> = created.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(logs, ["created issue 1 (request id [redacted:tracker])"]);
    assert_clean("the logs", &format!("{:?}", created.logs));
    assert_clean("stdout", &String::from_utf8_lossy(&created.stdout.kept));
    assert_clean("stderr", &String::from_utf8_lossy(&created.stderr.kept));

    let listed = host
        .call(
            "issues.list",
            &json!({"base_url": base}).to_string(),
            &CallContext::new(),
        )
        .await
        .expect("list runs");
    assert_eq!(listed.value["count"], 1);
    assert_clean("the list", &listed.value.to_string());
    assert_clean("the list's rendering", &listed.render_for_model());

    // An error page that quotes the credential.
    let err = host
        .call(
            "issues.create",
            &json!({"title": "boom", "base_url": base}).to_string(),
            &CallContext::new(),
        )
        .await
        .expect_err("the tracker fails");
    assert!(matches!(err, Error::Tool { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("the store failed for Bearer [redacted:tracker] ([redacted:tracker])"),
        "{text}"
    );
    assert_clean("the error", &text);
    assert_clean("the error's Debug", &format!("{err:?}"));

    // The tracker did get the real credential every time.
    let seen = tracker.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "{seen:?}"
    );

    drop(host);
    let audit = std::fs::read_to_string(&log).expect("read the audit log");
    assert_clean("the audit log", &audit);
    let records = audit_records(&log);
    let egress: Vec<&Value> = records.iter().filter(|r| r["event"] == "egress").collect();
    assert_eq!(egress.len(), 3, "{records:?}");
    assert!(
        egress.iter().all(|r| r["secret"] == "tracker"),
        "{egress:?}"
    );
    let failed = records
        .iter()
        .rfind(|r| r["event"] == "call_ended")
        .expect("call_ended");
    assert!(
        failed["error"]
            .as_str()
            .expect("error")
            .contains("[redacted:tracker]"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_url_outside_the_binding_gets_no_credential() {
    let tracker = Tracker::start(false).await;
    // Another tracker the allowlist lets the plugin reach, but the secret
    // is not bound to.
    let other = Tracker::start(false).await;
    let canary = Canary::start().await;
    let host = builder(
        &tracker,
        &[tracker.port(), other.port()],
        &Vault::new(TOKEN),
    )
    .approver(ApproveAll)
    .build()
    .await
    .expect("loads");

    for (tool, args) in [
        ("issues.list", json!({"base_url": other.base_url()})),
        (
            "issues.create",
            json!({"title": "Exfiltrate", "base_url": other.base_url()}),
        ),
        (
            "issues.delete",
            json!({"id": "1", "base_url": other.base_url()}),
        ),
    ] {
        let message = denied(call(&host, tool, args).await);
        assert!(
            message.contains(&format!(
                "secret `tracker` is not bound to {} http://127.0.0.1:{}/api/v1/issues",
                match tool {
                    "issues.list" => "GET",
                    "issues.create" => "POST",
                    _ => "DELETE",
                },
                other.port()
            )),
            "{tool}: {message}"
        );
        assert!(
            message.contains("do not change `base_url` unless told to"),
            "{message}"
        );
    }
    assert_eq!(other.connections(), 0, "the unbound tracker was contacted");

    // A port that is not on the allowlist at all.
    let message = denied(
        call(
            &host,
            "issues.list",
            json!({"base_url": format!("http://127.0.0.1:{}/api/v1", canary.addr.port())}),
        )
        .await,
    );
    assert!(
        message.contains(&format!(
            "`http://127.0.0.1:{}` is not in this plugin's allowlist",
            canary.addr.port()
        )),
        "{message}"
    );
    canary.assert_untouched();
    assert_eq!(tracker.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_base_url_is_denied_unless_granted() {
    let tracker = Tracker::start(false).await;
    let host = approving(&tracker, &Vault::new(TOKEN)).await;
    for (tool, args) in [
        ("issues.list", json!({})),
        ("issues.create", json!({"title": "Hello"})),
        ("issues.delete", json!({"id": "1"})),
    ] {
        let message = denied(call(&host, tool, args).await);
        assert!(
            message.starts_with(
                "the host refused the request to `https://issues.example.com/api/v1/issues"
            ),
            "{tool}: {message}"
        );
        assert!(
            message.contains("host `issues.example.com` is not in this plugin's allowlist"),
            "{tool}: {message}"
        );
    }
    assert_eq!(tracker.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_needs_approval() {
    let tracker = Tracker::start(false).await;
    let vault = Vault::new(TOKEN);
    let base = tracker.base_url();

    // No approver: the host denies every call that needs approval.
    let host = builder(&tracker, &[tracker.port()], &vault)
        .build()
        .await
        .expect("loads");
    let effects: Vec<(String, Effect)> = host
        .tools()
        .into_iter()
        .map(|t| (t.name, t.effect))
        .collect();
    assert_eq!(
        effects,
        [
            ("issues.list".to_string(), Effect::Write),
            ("issues.create".to_string(), Effect::Write),
            ("issues.delete".to_string(), Effect::Destructive),
        ],
        "granting POST and DELETE raises `list` to write; delete stays destructive"
    );
    call(
        &host,
        "issues.create",
        json!({"title": "Keep me", "base_url": base}),
    )
    .await
    .expect("create is configured to run without approval");
    let result = call(&host, "issues.delete", json!({"id": "1", "base_url": base})).await;
    match result {
        Err(Error::ApprovalDenied { tool, .. }) => assert_eq!(tool, "issues.delete"),
        other => panic!("expected the approval to be denied, got {other:?}"),
    }
    assert_eq!(tracker.titles(), ["Keep me"]);
    assert!(
        tracker.seen().iter().all(|s| s.method != "DELETE"),
        "{:?}",
        tracker.seen()
    );
    assert_eq!(
        vault.asked_for(),
        ["issues.create"],
        "no credential was fetched for the delete"
    );

    // With an approver, the same call runs.
    let host = builder(&tracker, &[tracker.port()], &vault)
        .approver(ApproveAll)
        .build()
        .await
        .expect("loads");
    let deleted = call(&host, "issues.delete", json!({"id": "1", "base_url": base}))
        .await
        .expect("approved");
    assert_eq!(deleted, json!({"id": "1", "deleted": true}));
    assert!(tracker.titles().is_empty());
    assert_eq!(
        tracker.seen().last().map(|s| s.method.as_str()),
        Some("DELETE")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_cannot_escape_the_issues_path() {
    let tracker = Tracker::start(false).await;
    let host = approving(&tracker, &Vault::new(TOKEN)).await;
    let base = tracker.base_url();
    for id in [
        "1/../../admin",
        "../admin",
        "..",
        ".",
        "1/2",
        "1?force=true",
        "1#top",
        "%2e%2e",
        "1%2F..%2Fadmin",
        "1\\..\\admin",
        " 1",
        "1\n",
        "",
        "ünïcode",
    ] {
        // Refused by the input schema's pattern before the plugin runs, or
        // (should a schema ever be looser) by the plugin's own check.
        match call(&host, "issues.delete", json!({"id": id, "base_url": base})).await {
            Err(Error::InvalidArguments { pointer, .. }) => assert_eq!(pointer, "/id", "{id:?}"),
            Err(Error::Tool {
                error: ToolError::InvalidInput(m),
                ..
            }) => assert!(m.contains("is not an issue id"), "{id:?}: {m}"),
            other => panic!("{id:?}: expected the id to be refused, got {other:?}"),
        }
    }
    assert_eq!(tracker.connections(), 0, "{:?}", tracker.seen());

    // A safe id that is not a number is one path segment, as given.
    let missing = tool_error(
        call(
            &host,
            "issues.delete",
            json!({"id": "PROJ-7_b", "base_url": base}),
        )
        .await,
    );
    assert!(matches!(missing, ToolError::NotFound(_)), "{missing:?}");
    let seen = tracker.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/v1/issues/PROJ-7_b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_url_cannot_add_a_query_fragment_or_dot_segment() {
    let tracker = Tracker::start(false).await;
    let host = approving(&tracker, &Vault::new(TOKEN)).await;
    let port = tracker.port();
    for (base_url, why) in [
        (
            format!("http://127.0.0.1:{port}/api/v1?x="),
            "query or fragment",
        ),
        (
            format!("http://127.0.0.1:{port}/api/v1#"),
            "query or fragment",
        ),
        (
            format!("http://127.0.0.1:{port}/api/v1/../../admin"),
            "`..` segments",
        ),
        (
            format!("http://127.0.0.1:{port}/api/v1/%2E%2e"),
            "`..` segments",
        ),
        (format!("ftp://127.0.0.1:{port}/api/v1"), "must start with"),
        ("https:///api/v1".to_string(), "has no host"),
        (format!("http://127.0.0.1:{port}/api v1"), "whitespace"),
    ] {
        match tool_error(call(&host, "issues.list", json!({"base_url": base_url})).await) {
            ToolError::InvalidInput(m) => {
                assert!(m.contains(why), "{base_url}: {m}");
                assert!(m.starts_with("`base_url` "), "{m}");
            }
            other => panic!("{base_url}: expected invalid input, got {other:?}"),
        }
    }
    assert_eq!(tracker.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_needs_a_one_line_title() {
    let tracker = Tracker::start(false).await;
    let host = approving(&tracker, &Vault::new(TOKEN)).await;
    let base = tracker.base_url();
    match call(
        &host,
        "issues.create",
        json!({"title": "", "base_url": base}),
    )
    .await
    {
        Err(Error::InvalidArguments { pointer, .. }) => assert_eq!(pointer, "/title"),
        other => panic!("expected invalid arguments, got {other:?}"),
    }
    let blank = tool_error(
        call(
            &host,
            "issues.create",
            json!({"title": "  \t ", "base_url": base}),
        )
        .await,
    );
    assert_eq!(
        blank,
        ToolError::InvalidInput("`title` must not be empty".into())
    );
    let two_lines = tool_error(
        call(
            &host,
            "issues.create",
            json!({"title": "a\nb", "base_url": base}),
        )
        .await,
    );
    assert!(
        matches!(&two_lines, ToolError::InvalidInput(m) if m.contains("one line")),
        "{two_lines:?}"
    );
    assert_eq!(tracker.connections(), 0);
    // Surrounding spaces are trimmed, not sent.
    let created = call(
        &host,
        "issues.create",
        json!({"title": "  Tidy  ", "base_url": base}),
    )
    .await
    .expect("create runs");
    assert_eq!(created["title"], "Tidy");
    assert_eq!(tracker.titles(), ["Tidy"]);
}
