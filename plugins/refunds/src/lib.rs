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

use portcullis_sdk::prelude::*;

portcullis_sdk::export_plugin! {
    /// Refund `amount` (in the order's currency) on the order `order_id`.
    /// Returns a confirmation.
    #[title = "Refund an order"]
    refund: write,
}

/// Which order to refund, and how much.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Refund {
    /// The order, e.g. A-1042.
    #[schemars(length(min = 1, max = 64))]
    order_id: String,
    /// How much to refund (more than 0).
    amount: f64,
}

/// The refund that was made.
#[derive(Serialize, JsonSchema)]
struct Refunded {
    /// Always `refunded`.
    status: String,
    /// The order.
    order_id: String,
    /// The amount refunded.
    amount: f64,
}

fn refund(input: Refund) -> Result<Refunded, ToolError> {
    if !(input.amount > 0.0 && input.amount.is_finite()) {
        return Err(ToolError::invalid_input("`amount` must be more than 0"));
    }
    Ok(Refunded {
        status: "refunded".into(),
        order_id: input.order_id,
        amount: input.amount,
    })
}
