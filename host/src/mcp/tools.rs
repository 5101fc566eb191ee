//! The MCP tool list: each host tool as an MCP `Tool` (the `formats` export,
//! annotations computed from the enforced grants), plus `_meta` under our
//! own prefix with the pins a client can compare against what it approved.

use crate::descriptor::ToolDescriptor;
use crate::error::Error;
use crate::formats::{ToolFormat, export_tools};
use rmcp::model::Tool;
use serde_json::{Value, json};

/// Our reverse-DNS `_meta` prefix (not `io.modelcontextprotocol`/`mcp`).
pub(super) const META_PREFIX: &str = "dev.portcullis/";

/// A `_meta` key under our prefix.
pub(super) fn meta_key(name: &str) -> String {
    format!("{META_PREFIX}{name}")
}

/// Every tool of the host as an MCP `Tool`, in the host's order.
pub(super) fn mcp_tools(descriptors: &[ToolDescriptor]) -> Result<Vec<Tool>, Error> {
    let exported = export_tools(descriptors, ToolFormat::Mcp)?;
    exported
        .definitions
        .into_iter()
        .zip(descriptors)
        .map(|(mut def, tool)| {
            def["_meta"] = tool_meta(tool);
            serde_json::from_value(def).map_err(|e| {
                Error::Internal(format!("tool `{}` is not a valid MCP tool: {e}", tool.name))
            })
        })
        .collect()
}

/// The facts a client can pin: the plugin's sha256, its tool list's sha256,
/// the effect, the approval setting and the grants. Directories appear by
/// their guest path and mode only, variables by name: the host's own paths
/// and values stay in the host.
fn tool_meta(tool: &ToolDescriptor) -> Value {
    let grants = &tool.grants;
    let mut meta = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        meta.insert(meta_key(k), v);
    };
    put("plugin", json!(tool.plugin));
    put("plugin_sha256", json!(tool.plugin_sha256));
    put("tool_list_sha256", json!(tool.tool_list_sha256));
    put("effect", json!(tool.effect.as_str()));
    put(
        "approval",
        crate::descriptor::descriptor_json(tool)["approval"].clone(),
    );
    put(
        "grants",
        json!({
            "dirs": grants.dirs.iter().map(|d| json!({
                "guest": d.guest,
                "mode": d.mode.as_str(),
            })).collect::<Vec<_>>(),
            "env": grants.env,
            "secrets": grants.secrets,
            "network": grants.http,
        }),
    );
    Value::Object(meta)
}
