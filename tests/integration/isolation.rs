//! Every call runs in a fresh instance that sees only what its policy
//! grants: no host environment, no args, no stdin.

use portcullis::{CallContext, DirMode, Host, PluginConfig};
use portcullis_tests::{Fixture, limits, plugin_path, plugin_sha};
use serde_json::json;

#[tokio::test]
async fn every_call_gets_a_fresh_instance() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|_| {})).await;
    for _ in 0..3 {
        let out = host
            .call("hostile.counter", "{}", &CallContext::new())
            .await
            .expect("counter");
        // The counter is a static in the guest: a reused instance would count up.
        assert_eq!(out.value, json!(1));
    }
}

#[tokio::test]
async fn plugin_sees_only_the_granted_env_and_no_args_or_stdin() {
    let fixture = Fixture::new();
    let host = Host::builder()
        .plugin(
            PluginConfig::new("hostile", plugin_path("hostile"))
                .sha256(plugin_sha("hostile"))
                .dir(fixture.path("ro"), "/ro", DirMode::ReadOnly)
                .env("GREETING", "hello"),
        )
        .build()
        .await
        .expect("loads");
    assert!(
        std::env::var_os("PATH").is_some(),
        "the test needs a host env to hide"
    );
    let out = host
        .call("hostile.environment", "{}", &CallContext::new())
        .await
        .expect("environment");
    assert_eq!(out.value["env"], json!([["GREETING", "hello"]]));
    assert_eq!(out.value["args"], json!([]));
    assert_eq!(out.value["stdin"], json!(""));
}

#[tokio::test]
async fn plugin_receives_exactly_the_validated_bytes() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|_| {})).await;
    let raw = "{ \"b\" : [1, 2.50, \"\\u00e9\"],\n\t\"a\": {\"z\": null} }";
    let out = host
        .call("hostile.echo", raw, &CallContext::new())
        .await
        .expect("echo");
    assert_eq!(out.value, json!(raw));
}

#[tokio::test]
async fn read_write_grant_raises_every_tool_effect_to_write() {
    let fixture = Fixture::new();
    let host = fixture.hostile(limits(|_| {})).await;
    let tools = host.tools();
    assert!(tools.iter().any(|t| t.name == "hostile.spin"));
    // The hostile plugin declares its tools `read` (but `wipe`, which says
    // `destructive`); its read-write grant lets any of them write, so the
    // host says so, and never lowers a stronger declaration.
    for tool in &tools {
        let expected = if tool.tool == "wipe" {
            portcullis::Effect::Destructive
        } else {
            portcullis::Effect::Write
        };
        assert_eq!(tool.effect, expected, "{}", tool.name);
    }
}
