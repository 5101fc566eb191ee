//! The examples run, not just compile: `agent` dispatches a model's tool
//! calls through the bundled manifest.

use std::path::Path;

#[path = "../examples/agent.rs"]
#[expect(dead_code, reason = "the example's `main` is not used by the test")]
mod agent;

#[tokio::test]
async fn agent_example_answers_every_tool_use_block() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root");
    assert!(
        root.join("plugins/dist/files.wasm").is_file(),
        "run `plugins/build.sh` first (the README's test command does)"
    );
    let message = agent::run(&root.join("plugins/portcullis.toml"))
        .await
        .expect("the example runs");
    let results = message["content"].as_array().expect("tool results");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["tool_use_id"], "toolu_01");
    assert!(results[0].get("is_error").is_none(), "{}", results[0]);
    assert!(
        results[0]["content"]
            .as_str()
            .expect("text")
            .contains("hello.txt")
    );
    assert_eq!(results[1]["tool_use_id"], "toolu_02");
    assert_eq!(results[1]["is_error"], true);
}
