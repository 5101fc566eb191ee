//! Approvals through the protocol: the per-call approvers a connection
//! hands the host ([`CallContext::approver`](crate::CallContext::approver)).
//!
//! - Legacy clients with the elicitation capability: [`Eliciting`] sends
//!   `elicitation/create` and waits for the person's answer.
//! - 2026-07-28 clients: [`Asking`] records what would be asked and
//!   refuses this round (the server then answers `input_required` with a
//!   sealed `requestState`); on the retry [`Answered`] approves only a
//!   request matching the opened state, with an accepting answer.
//!
//! The host still checks the decision against its own request (sha256,
//! tool, argument digest, nonce) and records it; `by` says the approval
//! came through elicitation.

use super::state::Pending;
use crate::approval::{ApprovalFuture, ApprovalRequest, Approver, Decision};
use rmcp::model::{
    ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema,
    InputRequest,
};
use rmcp::service::{Peer, RoleServer};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// The key of our one input request in `inputRequests`/`inputResponses`.
pub(super) const INPUT_KEY: &str = "approval";

/// The reason recorded for the first round of a 2026-07-28 approval.
pub(super) const ASKED: &str = "asked the client's user through MCP elicitation (input_required); \
     the client's retry with the answer is a new call";

/// What the person is shown: the facts the terminal prompt shows, with
/// the host's secret values hidden (`[redacted:NAME]`), directories by
/// their guest path only, and the plugin's text stripped of control and
/// invisible characters.
pub(super) fn message(request: &ApprovalRequest) -> String {
    let clean = |t: &str, cap| crate::text::sanitize_text(t, cap);
    let mut m = String::new();
    let _ = writeln!(
        m,
        "Approve this tool call? ({})",
        clean(&request.reason, 512)
    );
    let _ = writeln!(m, "tool: {}", request.tool);
    let _ = writeln!(
        m,
        "plugin: {} (sha256 {})",
        request.plugin, request.plugin_sha256
    );
    let _ = writeln!(m, "effect: {}", request.effect.as_str());
    let _ = writeln!(
        m,
        "description (the plugin's own text): {}",
        clean(&request.description, 2048)
    );
    for dir in &request.dirs {
        let _ = writeln!(m, "files: {} {}", dir.mode.describe(), dir.guest);
    }
    if !request.env.is_empty() {
        let _ = writeln!(m, "env: {}", request.env.join(", "));
    }
    for destination in &request.http {
        let _ = writeln!(m, "network: {destination}");
    }
    if !request.secrets.is_empty() {
        let _ = writeln!(m, "secrets: {}", request.secrets.join(", "));
    }
    let _ = write!(
        m,
        "arguments (sha256 {}): {}",
        request.arguments_sha256,
        clean(&request.arguments, 16 * 1024)
    );
    m
}

/// The elicitation asking about `request`: a form with no fields, so
/// accepting it is the approval.
pub(super) fn elicitation(request: &ApprovalRequest) -> ElicitRequestParams {
    ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message(request),
        requested_schema: ElicitationSchema::new(BTreeMap::new()),
    }
}

/// The same, as an `input_required` input request.
pub(super) fn input_request(request: &ApprovalRequest) -> InputRequest {
    InputRequest::Elicitation(ElicitRequest::new(elicitation(request)))
}

/// Asks a legacy client's user with `elicitation/create`.
pub(super) struct Eliciting {
    pub(super) peer: Peer<RoleServer>,
    /// The client, as named for the record.
    pub(super) client: String,
}

impl Approver for Eliciting {
    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> ApprovalFuture<'a> {
        Box::pin(async move {
            match self.peer.create_elicitation(elicitation(request)).await {
                Ok(answer) => decide(
                    request,
                    &answer.action,
                    &format!(
                        "a person through MCP elicitation (elicitation/create, client {})",
                        self.client
                    ),
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "elicitation failed");
                    request.deny("the MCP elicitation failed (the client did not answer it)")
                }
            }
        })
    }
}

/// The first round of a 2026-07-28 approval: keeps the request, refuses.
#[derive(Default)]
pub(super) struct Asking {
    pub(super) asked: Mutex<Option<ApprovalRequest>>,
}

impl Approver for Asking {
    fn decide(&self, request: &ApprovalRequest) -> Decision {
        *self.asked.lock().unwrap_or_else(|p| p.into_inner()) = Some(request.clone());
        request.deny(ASKED)
    }
}

/// The retry of a 2026-07-28 approval: the opened state (or why it could
/// not be opened) and the person's answer.
pub(super) struct Answered {
    pub(super) state: Result<Pending, String>,
    pub(super) action: Option<ElicitationAction>,
    pub(super) client: String,
}

impl Approver for Answered {
    fn decide(&self, request: &ApprovalRequest) -> Decision {
        let pending = match &self.state {
            Ok(pending) => pending,
            Err(reason) => return request.deny(reason.clone()),
        };
        if pending.plugin_sha256 != request.plugin_sha256
            || pending.tool != request.tool
            || pending.arguments_sha256 != request.arguments_sha256
        {
            return request.deny(
                "the requestState was sealed for another tool, plugin or arguments than this call",
            );
        }
        let Some(action) = &self.action else {
            return request.deny("the retry carried no answer to the approval request");
        };
        decide(
            request,
            action,
            &format!(
                "a person through MCP elicitation (input_required, client {})",
                self.client
            ),
        )
    }
}

/// Accept approves (naming how); decline and cancel refuse.
fn decide(request: &ApprovalRequest, action: &ElicitationAction, by: &str) -> Decision {
    match action {
        ElicitationAction::Accept => request.approve_by(by),
        ElicitationAction::Decline => request.deny(format!("declined by {by}")),
        _ => request.deny(format!("cancelled by {by}")),
    }
}

/// The answer in a retry's `inputResponses`, if it is one.
pub(super) fn answer(responses: Option<&rmcp::model::InputResponses>) -> Option<ElicitationAction> {
    let value = responses?.get(INPUT_KEY)?;
    serde_json::from_value::<ElicitResult>(value.clone())
        .ok()
        .map(|r| r.action)
}
