//! Secrets the plugin uses but never holds: a secret value that comes back
//! to the plugin (here read from a copy of it in a read-only granted folder,
//! standing in for an upstream that echoes it, since the host refuses a
//! secret in a call's arguments) is scrubbed, raw and encoded, from the
//! output, the text a model sees, captured stdio, logs, errors and the audit
//! log; a secret in the arguments is refused without being repeated; and a
//! secret that is missing, empty, short, or handed to the guest through
//! `env` fails the load.

use portcullis::manifest::{DestinationEntry, InjectEntry};
use portcullis::{CallContext, DirMode, Error, FileSink, Host, PluginConfig, Secret, SecretConfig};
use portcullis_tests::{audit_records, plugin_path, plugin_sha};
use std::path::Path;

/// The secret of the tests, sourced from a file.
const TOKEN: &str = "sk-live-4f9c2d7e1a8b3c6d";
/// A secret made of the bytes `flood_stdout` writes, 24 of them: 1024-byte
/// writes split it across write boundaries.
const FLOOD: &str = "AAAAAAAAAAAAAAAAAAAAAAAA";
/// A secret equal to one of the lines `log_flood` logs.
const LOG_LINE: &str = "message 7";

fn secret(dir: &Path, name: &str, value: &str) -> SecretConfig {
    let path = dir.join(format!("{name}.secret"));
    std::fs::write(&path, format!("{value}\n")).expect("write secret");
    SecretConfig::file(name, path)
        .destination(DestinationEntry::url("https://api.example.com/v1"))
        .inject(InjectEntry::header("Authorization", "Bearer {}"))
}

fn hostile() -> PluginConfig {
    PluginConfig::new("hostile", plugin_path("hostile"))
        .sha256(plugin_sha("hostile"))
        // A secret's destination must be one the plugin could reach.
        .http("https://api.example.com/v1")
        .secret("api")
        .env("GREETING", "hello")
}

/// The guest path of the read-only folder holding [`ECHOED`] and
/// [`COMPLAINT`].
const DATA: &str = "/data";
/// The token's [`forms`], one a line.
const ECHOED: &str = "/data/echoed.txt";
/// A complaint naming the token, for `hostile.complain` to fail with.
const COMPLAINT: &str = "/data/complaint.txt";

/// Fills the folder granted at [`DATA`]: copies of the token's value (not
/// the `file:` secret source itself), which reach the plugin by a way the
/// outbound argument scan does not cover.
fn data(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("create data folder");
    std::fs::write(data.join("echoed.txt"), forms().join("\n")).expect("write echoed");
    std::fs::write(
        data.join("complaint.txt"),
        format!("upstream refused token {TOKEN}"),
    )
    .expect("write complaint");
    data
}

async fn host(dir: &Path) -> Host {
    Host::builder()
        .secret(secret(dir, "api", TOKEN))
        .secret(secret(dir, "flood", FLOOD))
        .secret(secret(dir, "logline", LOG_LINE))
        .plugin(hostile().dir(data(dir), DATA, DirMode::ReadOnly))
        .audit(FileSink::open(dir.join("audit.jsonl")).expect("open log"))
        .build()
        .await
        .expect("the host loads with its secrets")
}

/// `Basic base64("user:" + TOKEN)`, as the injection primitive makes it.
fn basic() -> String {
    let basic = InjectEntry::basic("user")
        .rule()
        .expect("rule")
        .inject(&Secret::new(TOKEN))
        .expect("inject");
    match basic {
        portcullis::Injection::Header { value, .. } => value.expose_for_injection().to_string(),
        other => panic!("basic auth is a header, got {other:?}"),
    }
}

/// The token in the forms the scrubber must recognise.
fn forms() -> Vec<String> {
    let basic = basic();
    let hex: String = TOKEN.bytes().map(|b| format!("{b:02x}")).collect();
    vec![
        TOKEN.to_string(),
        basic,
        hex.clone(),
        hex.to_uppercase(),
        format!("https://api.example.com/v1?key={TOKEN}&page=2"),
    ]
}

fn assert_clean(what: &str, text: &str) {
    portcullis_tests::assert_no_secret(what, text.as_bytes(), TOKEN);
}

async fn call(
    host: &Host,
    tool: &str,
    arguments: serde_json::Value,
) -> Result<portcullis::ToolOutput, Error> {
    host.call(tool, &arguments.to_string(), &CallContext::new())
        .await
}

#[tokio::test]
async fn secret_read_back_is_scrubbed_from_output_and_rendering() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path()).await;
    let output = call(&host, "hostile.read", serde_json::json!({ "path": ECHOED }))
        .await
        .expect("read runs");
    let text = output.value.as_str().expect("read returns a string");
    assert_clean("the output", text);
    assert_eq!(text.matches("[redacted:api]").count(), 5, "{text}");
    assert_clean("the rendering", &output.render_for_model());
}

#[tokio::test]
async fn secret_in_arguments_is_refused_without_repeating_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path()).await;
    for form in forms() {
        let err = call(&host, "hostile.echo", serde_json::json!({ "echoed": form }))
            .await
            .expect_err("a secret in the arguments is refused");
        assert!(matches!(err, Error::InvalidArguments { .. }), "{err:?}");
        assert!(
            err.to_string().contains("carry the value of secret `api`"),
            "{form}: {err}"
        );
        assert_clean("the refusal", &err.to_string());
        assert_clean("the refusal's Debug", &format!("{err:?}"));
    }
    // Schema errors quote the offending value: the refusal comes first.
    let err = call(
        &host,
        "hostile.flood_stdout",
        serde_json::json!({ "bytes": TOKEN }),
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, Error::InvalidArguments { .. }), "{err:?}");
    assert_clean("the argument error", &err.to_string());
    drop(host);
    let log = std::fs::read_to_string(dir.path().join("audit.jsonl")).expect("read");
    assert_clean("the audit log", &log);
    assert!(
        !log.contains("call_started"),
        "a refused call never starts: {log}"
    );
}

#[tokio::test]
async fn secret_is_scrubbed_from_every_audit_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path()).await;
    call(&host, "hostile.read", serde_json::json!({ "path": ECHOED }))
        .await
        .expect("read runs");
    call(
        &host,
        "hostile.complain",
        serde_json::json!({ "path": COMPLAINT }),
    )
    .await
    .expect_err("complain fails");
    drop(host);
    let log = dir.path().join("audit.jsonl");
    assert_clean(
        "the audit log",
        &std::fs::read_to_string(&log).expect("read"),
    );
    let records = audit_records(&log);
    assert_eq!(records[0]["secrets"], serde_json::json!(["api"]));
    let started: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "call_started")
        .collect();
    assert_eq!(started.len(), 2, "{records:?}");
    assert_eq!(
        started[1]["arguments"],
        serde_json::json!({ "path": COMPLAINT }).to_string()
    );
    let failed = records
        .iter()
        .rfind(|r| r["event"] == "call_ended")
        .expect("call_ended");
    assert!(
        failed["error"]
            .as_str()
            .expect("error")
            .contains("upstream refused token [redacted:api]"),
        "{failed}"
    );
}

#[tokio::test]
async fn secret_is_scrubbed_from_error_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path()).await;
    let err = call(
        &host,
        "hostile.complain",
        serde_json::json!({ "path": COMPLAINT }),
    )
    .await
    .expect_err("complain fails");
    assert!(matches!(err, Error::Tool { .. }), "{err:?}");
    assert_clean("the tool error", &err.to_string());
    assert_clean("the tool error's Debug", &format!("{err:?}"));
    assert!(
        err.to_string()
            .contains("upstream refused token [redacted:api]"),
        "{err}"
    );
    assert_clean("the model's text", &err.render_for_model());
}

#[tokio::test]
async fn secret_is_scrubbed_from_stdout_and_stderr_across_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path()).await;
    for tool in ["hostile.flood_stdout", "hostile.flood_stderr"] {
        let output = host
            .call(tool, r#"{"bytes": 3000}"#, &CallContext::new())
            .await
            .expect("flood runs");
        let captured = if tool.ends_with("stdout") {
            &output.stdout
        } else {
            &output.stderr
        };
        let kept = String::from_utf8_lossy(&captured.kept);
        assert_eq!(
            kept,
            "[redacted:flood]".repeat(3000 / FLOOD.len()),
            "{tool}"
        );
    }
}

#[tokio::test]
async fn secret_is_scrubbed_from_plugin_logs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path()).await;
    let output = host
        .call("hostile.log_flood", r#"{"bytes": 12}"#, &CallContext::new())
        .await
        .expect("logs");
    let messages: Vec<&str> = output.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages.len(), 12);
    assert_eq!(messages[6], "message 6");
    assert_eq!(messages[7], "[redacted:logline]");
    assert!(!messages.contains(&LOG_LINE), "{messages:?}");
}

#[tokio::test]
async fn guest_environment_never_holds_a_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host(dir.path()).await;
    let output = host
        .call("hostile.environment", "{}", &CallContext::new())
        .await
        .expect("runs");
    assert_eq!(
        output.value["env"],
        serde_json::json!([["GREETING", "hello"]]),
        "the plugin sees only its explicit env"
    );
    assert_clean("the environment", &output.value.to_string());
    let tool = host
        .tools()
        .into_iter()
        .find(|t| t.name == "hostile.environment")
        .expect("tool");
    assert_eq!(tool.grants.secrets, ["api"]);
}

async fn load_error(secret: SecretConfig, plugin: PluginConfig) -> String {
    match Host::builder().secret(secret).plugin(plugin).build().await {
        Ok(_) => panic!("the host loaded"),
        Err(e @ Error::Manifest { .. }) => format!("{e} / {}", e.hint().unwrap_or_default()),
        Err(other) => panic!("expected a manifest error, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_empty_or_short_secret_fails_the_load_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = SecretConfig::file("api", dir.path().join("absent"))
        .destination(DestinationEntry::url("https://api.example.com"))
        .inject(InjectEntry::query("key"));
    let err = load_error(missing, hostile()).await;
    assert!(
        err.contains("secret `api`") && err.contains("failed to read"),
        "{err}"
    );

    let err = load_error(secret(dir.path(), "api", ""), hostile()).await;
    assert!(
        err.contains("secret `api`") && err.contains("is empty"),
        "{err}"
    );

    let err = load_error(secret(dir.path(), "api", "short"), hostile()).await;
    assert!(
        err.contains("secret `api`") && err.contains("5 bytes"),
        "{err}"
    );
    assert!(!err.contains("short\""), "{err}");

    let unset = SecretConfig::env("api", "PORTCULLIS_TEST_NEVER_SET")
        .destination(DestinationEntry::url("https://api.example.com"))
        .inject(InjectEntry::query("key"));
    let err = load_error(unset, hostile()).await;
    assert!(
        err.contains("`PORTCULLIS_TEST_NEVER_SET` is not set"),
        "{err}"
    );
}

#[tokio::test]
async fn env_value_holding_a_secret_in_any_form_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hex: String = TOKEN.bytes().map(|b| format!("{b:02x}")).collect();
    // The value itself, inside a longer value, hex-encoded, and inside a
    // Basic credential (base64 of `user:` + the value).
    for value in [
        TOKEN.to_string(),
        format!("prefix-{TOKEN}-suffix"),
        format!("key={hex}"),
        basic(),
    ] {
        let plugin = hostile().env("TOKEN", value.as_str());
        let err = load_error(secret(dir.path(), "api", TOKEN), plugin).await;
        assert!(
            err.contains("environment variable `TOKEN` contains the value of secret `api`"),
            "{value}: {err}"
        );
        assert!(!err.contains(TOKEN) && !err.contains(&hex), "{err}");
    }
}

#[tokio::test]
async fn plugin_naming_an_unknown_secret_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = hostile().secret("nope");
    let err = load_error(secret(dir.path(), "api", TOKEN), plugin).await;
    assert!(err.contains("secret `nope` is not configured"), "{err}");
    assert!(err.contains("configured secrets: api"), "{err}");
}
