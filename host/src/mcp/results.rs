//! What a host call becomes on the wire: an output becomes a result with
//! `structuredContent` and the same untrusted-output text a model gets from
//! `render_for_model`; a refusal the model can correct (arguments, tool
//! errors, limits, approvals) becomes an `isError` result naming the field
//! or limit; anything else a JSON-RPC error. No message carries a host
//! path, a secret or a backtrace: internal errors are logged on stderr and
//! answered with the call's id only.

use super::tools::meta_key;
use crate::error::Error;
use crate::host::ToolOutput;
use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResult, ContentBlock, MetaObject};
use serde_json::{Map, Value, json};

/// A successful call: structured content plus the delimited text.
///
/// Before 2026-07-28 structured content must be an object; rmcp would turn
/// any other value into a bare text block for such a peer, outside the
/// delimiters, so a legacy client gets a non-object value only in the text.
pub(super) fn output_result(output: &ToolOutput, modern: bool) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(output.render_for_model())]);
    if modern || output.value.is_object() {
        result.structured_content = Some(output.value.clone());
    }
    let provenance = &output.provenance;
    result.meta = Some(meta(json!({
        "provenance": {
            "trust": "untrusted",
            "plugin": provenance.plugin,
            "plugin_sha256": provenance.plugin_sha256,
            "tool": provenance.tool,
            "call_id": provenance.call_id,
            "write_access": provenance.write_access,
        },
        "flags": output.flags.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })));
    result
}

/// A failed call: an `isError` result the model can act on, or a JSON-RPC
/// error for what is not a tool result at all. `asked` says whether the
/// client's user could be asked for approval (elicitation).
pub(super) fn error_result(error: &Error, asked: bool) -> Result<CallToolResult, McpError> {
    // The kind is `Error::kind()`, the names the audit's `call_ended`
    // outcomes use too.
    let detail = match error {
        Error::InvalidArguments {
            pointer, reason, ..
        } => json!({"field": pointer, "reason": reason}),
        Error::Tool { error, .. } => json!({"error": error.to_string()}),
        Error::LimitExceeded { limit, .. } => json!({"limit": limit.as_str()}),
        Error::ApprovalDenied { reason, .. } => json!({"reason": reason}),
        Error::ApprovalTimedOut { after, .. } => json!({"after_seconds": after.as_secs()}),
        Error::Suspicious { denials, .. } => json!({"denials": denials}),
        // A full host is the client's to retry, not a failure of the host.
        Error::Busy { slots, waited, .. } => {
            json!({"slots": slots, "waited_ms": waited.as_millis()})
        }
        Error::Crashed { .. } | Error::Cancelled { .. } | Error::InvalidOutput { .. } => json!({}),
        Error::UnknownTool { tool, .. } => {
            return Err(McpError::invalid_params(
                format!("unknown tool `{tool}`"),
                None,
            ));
        }
        other => {
            // Internal and audit failures may name host paths: the detail
            // stays in the server's log.
            tracing::error!(error = %other, "MCP call failed inside the host");
            return Err(McpError::internal_error(
                "internal host error; the server's log has the details",
                None,
            ));
        }
    };
    let mut text = error.to_string();
    if let (Error::ApprovalDenied { tool, .. }, false) = (error, asked) {
        text.push_str(&pre_approval_hint(tool));
    } else if let Some(hint) = error.hint() {
        text.push_str("\nhint: ");
        text.push_str(&hint);
    }
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    let mut fields = Map::new();
    fields.insert("kind".into(), json!(error.kind()));
    if let Value::Object(detail) = detail {
        fields.extend(detail);
    }
    result.meta = Some(meta(json!({"error": fields})));
    Ok(result)
}

/// How an operator can let such a call run when the client cannot ask its
/// user (no elicitation capability): from the manifest or the terminal.
fn pre_approval_hint(tool: &str) -> String {
    let (plugin, name) = tool.split_once('.').unwrap_or((tool, tool));
    format!(
        "\nhint: this client cannot ask a person to approve the call (it did not declare the \
         elicitation capability); an operator can \
         pre-approve it in the manifest (`[plugins.{plugin}.tools.{name}] approval = {{ rules = [...] }}` \
         or `\"never\"`, for `write` tools) or run it once with `portcullis call --approve`"
    )
}

/// `_meta` with every key of `fields` under our prefix.
pub(super) fn meta(fields: Value) -> MetaObject {
    let mut meta = MetaObject::new();
    if let Value::Object(fields) = fields {
        for (k, v) in fields {
            meta.0.insert(meta_key(&k), v);
        }
    }
    meta
}
