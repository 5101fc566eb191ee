//! HTTP fixtures (`HostBuilder::http_fixtures`, what `portcullis test`
//! serves): the real egress gate runs every check, injects the secret and
//! writes its audit records; only the final send is answered by a fixture,
//! which sees exactly what an upstream would. Nothing reaches the network.

use portcullis::manifest::{DestinationEntry, HttpTable, InjectEntry};
use portcullis::{Error, FileSink, Fixture, Fixtures, Host, PluginConfig, SecretConfig, ToolError};
use portcullis_tests::net::Canary;
use portcullis_tests::tracker::{TOKEN, Vault};
use portcullis_tests::{
    ApproveAll, assert_no_secret, audit_records, call_value as call, events, limits, plugin_path,
    plugin_sha, tool_error,
};
use serde_json::json;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

const API: &str = "https://issues.example.com/api/v1";

/// The issues plugin, allowed to reach the tracker API, with secret `tracker` bound to the API,
/// served by `fixtures`, audited to `log`.
async fn host(fixtures: &Arc<Fixtures>, log: &Path) -> Host {
    let secret = SecretConfig::new("tracker", Vault::new(TOKEN))
        .destination(DestinationEntry::Table {
            url: API.into(),
            methods: None,
            allow_private: false,
        })
        .inject(InjectEntry::header("Authorization", "Bearer {}"));
    let plugin = PluginConfig::new("issues", plugin_path("issues"))
        .sha256(plugin_sha("issues"))
        .secret("tracker")
        .http(HttpTable::new(format!("{API}/")).methods(["GET", "POST"]))
        .limits(limits(|l| l.http_response = 2048));
    Host::builder()
        .approver(ApproveAll)
        .audit(FileSink::open(log).expect("open"))
        .secret(secret)
        .plugin(plugin)
        .http_fixtures(Arc::clone(fixtures))
        .build()
        .await
        .expect("the issues plugin loads")
}

fn list_fixture(url: &str) -> Fixture {
    let mut f = Fixture::new("GET", url);
    f.headers = vec![("content-type".into(), "application/json".into())];
    f.body = br#"[{"id": 7, "title": "Crash on start", "state": "open"}]"#.to_vec();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixture_receives_the_injected_secret_and_the_gate_audits_the_exchange() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let fixtures = Arc::new(Fixtures::default());
    let host = host(&fixtures, &log).await;
    fixtures.set(vec![list_fixture(&format!("{API}/issues?limit=20"))]);

    let out = call(&host, "issues.list", json!({})).await.expect("listed");
    assert_eq!(out["issues"][0]["title"], "Crash on start", "{out}");
    assert_no_secret("the output", out.to_string().as_bytes(), TOKEN);

    let received = fixtures.take_received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.fixture, Some(0));
    assert_eq!(request.url, format!("{API}/issues?limit=20"));
    let auth = request
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str());
    assert_eq!(auth, Some(format!("Bearer {TOKEN}").as_str()));

    let records = audit_records(&log);
    let names = events(&records);
    assert!(names.iter().any(|e| e == "egress_sent"), "{names:?}");
    let egress = records
        .iter()
        .find(|r| r["event"] == "egress")
        .expect("an egress record");
    assert_eq!(egress["secret"], "tracker", "{egress}");
    assert_no_secret("the audit log", &std::fs::read(&log).expect("log"), TOKEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_addresses_go_through_the_real_address_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixtures = Arc::new(Fixtures::default());
    let host = host(&fixtures, &dir.path().join("audit.jsonl")).await;
    let mut private = list_fixture(&format!("{API}/issues?limit=20"));
    private.addresses = vec!["10.1.2.3".parse::<IpAddr>().expect("ip")];
    fixtures.set(vec![private]);
    let why = match tool_error(call(&host, "issues.list", json!({})).await) {
        ToolError::Denied(why) => why,
        other => panic!("expected a denial, got {other:?}"),
    };
    assert!(why.contains("blocked range"), "{why}");
    assert!(fixtures.take_received().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fixtures_nothing_reaches_the_network() {
    let canary = Canary::start().await;
    let fixtures = Arc::new(Fixtures::default());
    // Allowlisted, private addresses allowed, an IP literal (no lookup):
    // every check passes, and still only the fixtures answer.
    let host = Host::builder()
        .plugin(
            PluginConfig::new("fetch", plugin_path("fetch"))
                .sha256(plugin_sha("fetch"))
                .http(HttpTable::new(format!("http://{}", canary.addr)).allow_private(true))
                .http("https://example.com"),
        )
        .http_fixtures(Arc::clone(&fixtures))
        .build()
        .await
        .expect("the fetch plugin loads");
    let url = format!("http://{}/", canary.addr);
    let result = call(&host, "fetch.fetch", json!({ "url": url })).await;
    let text = format!("{result:?}");
    assert!(text.contains("no fixture answers"), "{text}");
    assert_eq!(fixtures.take_received().len(), 1, "the gate let it through");
    canary.assert_untouched();
    // A name no fixture declares does not resolve.
    let result = call(&host, "fetch.fetch", json!({"url": "https://example.com/"})).await;
    let text = format!("{result:?}");
    assert!(text.contains("no fixture is for"), "{text}");
    assert!(fixtures.take_received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixture_response_over_the_limit_never_reaches_the_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixtures = Arc::new(Fixtures::default());
    let host = host(&fixtures, &dir.path().join("audit.jsonl")).await;
    let mut big = list_fixture(&format!("{API}/issues?limit=20"));
    big.body = vec![b' '; 4096];
    fixtures.set(vec![big]);
    let result: Result<_, Error> = call(&host, "issues.list", json!({})).await;
    match tool_error(result) {
        ToolError::Internal(m) => assert!(m.contains("over the limit of 2048 bytes"), "{m}"),
        other => panic!("expected the plugin's failure, got {other:?}"),
    }
}

/// Recording (`Fixtures::record`, `portcullis test --record`): requests go
/// to the real upstream through every check of the gate, and what is kept
/// of the exchange carries no form of the secret, even from an upstream
/// that echoes it in every form it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_runs_every_check_of_the_gate_and_keeps_no_secret() {
    use portcullis_tests::tracker::{Tracker, builder};
    let tracker = Tracker::start(true).await;
    let canary = Canary::start().await;
    let fixtures = Arc::new(Fixtures::default());
    let host = builder(&tracker, &[tracker.port()], &Vault::new(TOKEN))
        .approver(ApproveAll)
        .http_fixtures(Arc::clone(&fixtures))
        .build()
        .await
        .expect("the issues plugin loads");
    let base = tracker.base_url();
    fixtures.record();

    call(
        &host,
        "issues.create",
        json!({"title": "Printer on fire", "base_url": base}),
    )
    .await
    .expect("created upstream");
    call(&host, "issues.list", json!({"base_url": base}))
        .await
        .expect("listed upstream");
    assert_eq!(
        tracker.titles(),
        ["Printer on fire"],
        "the upstream was reached"
    );

    let recorded = fixtures.take_recorded();
    assert_eq!(recorded.len(), 2);
    for r in &recorded {
        assert_eq!(r.failed, None);
        assert_eq!(r.secret_headers, ["authorization"]);
        let f = &r.fixture;
        let kept = format!(
            "{} {} {:?} {:?} {}",
            f.method,
            f.url,
            f.request_body.as_deref().map(String::from_utf8_lossy),
            f.headers,
            String::from_utf8_lossy(&f.body)
        );
        assert!(
            kept.contains("[redacted:tracker]"),
            "the echo was kept: {kept}"
        );
        assert_no_secret("a recorded exchange", kept.as_bytes(), TOKEN);
    }
    assert_eq!(recorded[0].fixture.method, "POST");
    assert!(recorded[0].fixture.request_body.is_some());

    // The allowlist still decides: a destination it does not list is
    // denied and nothing is sent or recorded.
    let result = call(
        &host,
        "issues.list",
        json!({"base_url": format!("http://{}/api/v1", canary.addr)}),
    )
    .await;
    assert!(matches!(tool_error(result), ToolError::Denied(_)));
    assert!(fixtures.take_recorded().is_empty());
    canary.assert_untouched();
}
