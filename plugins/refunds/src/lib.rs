//! `refunds`: an example of a policy-gated action. `refund` pretends to
//! refund an order and returns a confirmation; it keeps no state.
//!
//! Build: `plugins/build.sh` (output in `plugins/dist/refunds.wasm`).
//! The bundled manifest (`plugins/portcullis.toml`) lets refunds up to 100
//! run and makes larger ones wait for approval:
//!
//! ```toml
//! [plugins.refunds.tools.refund]
//! approval = { rules = ["/amount > 100"] }
//! ```
//!
//! ```sh
//! portcullis call plugins/portcullis.toml refunds.refund '{"order_id": "A-1", "amount": 40}'
//! portcullis call plugins/portcullis.toml refunds.refund '{"order_id": "A-2", "amount": 250}' --approve
//! ```

use portcullis_sdk::{Args, Effect, Plugin, Tool, ToolError, Value, json};
use serde::Deserialize;

struct Refunds;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Refund {
    order_id: String,
    amount: serde_json::Number,
}

impl Plugin for Refunds {
    fn tools() -> Vec<Tool> {
        vec![
            Tool::new(
                "refund",
                "Refund `amount` (in the order's currency) on the order `order_id`. \
                 Returns a confirmation.",
            )
            .title("Refund an order")
            .input_schema(json!({
                "type": "object",
                "properties": {
                    "order_id": { "type": "string", "minLength": 1, "maxLength": 64, "description": "The order, e.g. A-1042" },
                    "amount": { "type": "number", "exclusiveMinimum": 0, "description": "How much to refund" }
                },
                "required": ["order_id", "amount"],
                "additionalProperties": false
            }))
            .effect(Effect::Write),
        ]
    }

    fn call(tool: &str, args: Args<'_>) -> Result<Value, ToolError> {
        match tool {
            "refund" => {
                let refund: Refund = args.parse()?;
                Ok(json!({
                    "status": "refunded",
                    "order_id": refund.order_id,
                    "amount": refund.amount,
                }))
            }
            other => Err(ToolError::unknown_tool(other)),
        }
    }
}

portcullis_sdk::export_plugin!(Refunds);
