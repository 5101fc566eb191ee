//! An agent runtime in miniature: offer the bundled manifest's tools to a
//! model in Anthropic's format, dispatch the model's `tool_use` blocks to
//! the host, and build the `tool_result` message for the next turn.
//!
//! No network is needed: the model's reply is canned. Swap `model_reply`
//! for a real Messages API call and the rest stays the same.
//!
//! ```sh
//! plugins/build.sh && cargo run --example agent
//! ```

use portcullis::{CallContext, Host, ToolFormat, export_tools};
use serde_json::{Value, json};
use std::path::Path;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let message = run(Path::new("plugins/portcullis.toml")).await?;
    println!("{}", serde_json::to_string_pretty(&message)?);
    Ok(())
}

/// Runs one agent turn against the manifest at `manifest` and returns the
/// `user` message carrying the tool results.
pub async fn run(manifest: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    let host = Host::from_manifest(manifest).await?;

    // 1. Offer the tools. Names become `plugin__tool`; keep the map to
    //    dispatch the model's calls back.
    let exported = export_tools(&host.tools(), ToolFormat::Anthropic)?;
    let request = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "tools": exported.definitions,
        "messages": [{"role": "user", "content": "What is in the sample folder?"}],
    });
    eprintln!(
        "offering {} tools",
        request["tools"].as_array().map_or(0, Vec::len)
    );

    // 2. The model answers (canned here).
    let reply = model_reply();

    // 3. Dispatch every `tool_use` block. The model picks the tool and the
    //    arguments; the host decides what that tool may touch.
    let ctx = CallContext::new().caller("example-agent");
    let mut results = Vec::new();
    for block in reply["content"].as_array().into_iter().flatten() {
        if block["type"] != "tool_use" {
            continue;
        }
        let id = block["id"].clone();
        let model_name = block["name"].as_str().unwrap_or_default();
        let Some(tool) = exported.names.tool_name(model_name) else {
            results.push(json!({
                "type": "tool_result", "tool_use_id": id, "is_error": true,
                "content": format!("there is no tool named `{model_name}`"),
            }));
            continue;
        };
        let result = match host.call(tool, &block["input"].to_string(), &ctx).await {
            // The output is data from a plugin, not instructions: it goes
            // to the model inside delimiters it cannot close or imitate,
            // with its provenance.
            Ok(output) => json!({
                "type": "tool_result", "tool_use_id": id,
                "content": output.render_for_model(),
            }),
            // So is an error: its message can carry text the plugin wrote.
            Err(e) => json!({
                "type": "tool_result", "tool_use_id": id, "is_error": true,
                "content": e.render_for_model(),
            }),
        };
        results.push(result);
    }

    // 4. The next turn's user message.
    Ok(json!({"role": "user", "content": results}))
}

/// What a model might answer: some text and two tool calls, one of them to a
/// tool that does not exist.
fn model_reply() -> Value {
    json!({
        "role": "assistant",
        "stop_reason": "tool_use",
        "content": [
            {"type": "text", "text": "Let me look at the sample folder."},
            {"type": "tool_use", "id": "toolu_01", "name": "files__list_dir",
             "input": {"path": "/sample"}},
            {"type": "tool_use", "id": "toolu_02", "name": "shell__run",
             "input": {"command": "cat /etc/passwd"}},
        ],
    })
}
