//! Approval gates: before a call that needs approval runs, the host asks an
//! [`Approver`] and runs the plugin only on an [`Approval`] bound to this
//! exact request.
//!
//! An approval is bound to the plugin's sha256, the tool, the sha256 of the
//! canonical arguments, and a nonce the host issued for this one request,
//! so it is used once: replayed for other arguments, another plugin, a
//! later call or another host, it is refused. The plugin has no interface
//! to any of this: it cannot ask for, give, see or replay an approval. When
//! approval is needed is set per tool in the manifest
//! ([`ApprovalSetting`](crate::ApprovalSetting)).

use crate::policy::DirGrant;
use crate::policy::Effect;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the host asks an [`Approver`] about: everything needed to decide.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApprovalRequest {
    /// The call's id, as in the audit log.
    pub call_id: u64,
    /// Who is calling, from the call context.
    pub caller: Option<String>,
    /// The plugin's name.
    pub plugin: String,
    /// The plugin's pinned sha256.
    pub plugin_sha256: String,
    /// `plugin.tool`.
    pub tool: String,
    /// The tool's description (the plugin's text: untrusted; escape it
    /// before showing it).
    pub description: String,
    /// The arguments as the plugin will receive them, with the host's
    /// secret values scrubbed (`[redacted:NAME]`).
    pub arguments: String,
    /// sha256 of the canonical arguments (what the approval binds to).
    pub arguments_sha256: String,
    /// The tool's effect as the host sees it (raised by grants).
    pub effect: Effect,
    /// Directory grants in force.
    pub dirs: Vec<DirGrant>,
    /// Names of the environment variables the plugin sees.
    pub env: Vec<String>,
    /// HTTP destinations the plugin may reach, as normalised allowlist
    /// entries (with their methods).
    pub http: Vec<String>,
    /// Names of the secrets the plugin may have attached to its requests.
    pub secrets: Vec<String>,
    /// Why approval is needed (`always`, or the rule that holds).
    pub reason: String,
    /// What makes an approval of this request good once: issued by the
    /// host's [`Gate`].
    pub(crate) binding: Binding,
}

/// The identity of one approval request: the issuing host and a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Binding {
    issuer: u64,
    nonce: u64,
}

/// A granted approval, bound to one request. Only
/// [`ApprovalRequest::approve`] makes one. It can be cloned (so that tests
/// can try to replay it), but the host accepts it once, for the request it
/// was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    plugin_sha256: String,
    tool: String,
    arguments_sha256: String,
    binding: Binding,
    by: Option<String>,
}

/// An approver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Run the call.
    Approve(Approval),
    /// Do not run it, for this reason.
    Deny(String),
}

impl ApprovalRequest {
    /// Approves this request (and nothing else).
    pub fn approve(&self) -> Decision {
        self.approve_as(None::<String>)
    }

    /// Approves this request, naming who approved it for the record.
    pub fn approve_by(&self, who: impl Into<String>) -> Decision {
        self.approve_as(Some(who.into()))
    }

    fn approve_as(&self, by: Option<String>) -> Decision {
        Decision::Approve(Approval {
            plugin_sha256: self.plugin_sha256.clone(),
            tool: self.tool.clone(),
            arguments_sha256: self.arguments_sha256.clone(),
            binding: self.binding,
            by,
        })
    }

    /// Refuses this request.
    pub fn deny(&self, reason: impl Into<String>) -> Decision {
        Decision::Deny(reason.into())
    }
}

/// The future an [`Approver`] returns.
pub type ApprovalFuture<'a> = Pin<Box<dyn Future<Output = Decision> + Send + 'a>>;

/// Decides whether a call that needs approval may run. Set one with
/// [`HostBuilder::approver`](crate::HostBuilder::approver); without one,
/// every call that needs approval is denied.
///
/// Implement [`decide`](Approver::decide) for a quick synchronous answer, or
/// [`approve`](Approver::approve) to wait for a person (a prompt, a chat
/// message, an MCP elicitation). The call's cancellation still applies
/// while the host waits.
pub trait Approver: Send + Sync + 'static {
    /// Decides synchronously. The default denies.
    fn decide(&self, request: &ApprovalRequest) -> Decision {
        request.deny("no approver is configured")
    }

    /// Decides, possibly waiting. The default calls
    /// [`decide`](Approver::decide).
    fn approve<'a>(&'a self, request: &'a ApprovalRequest) -> ApprovalFuture<'a> {
        let decision = self.decide(request);
        Box::pin(std::future::ready(decision))
    }
}

/// The default approver: denies every call that needs approval.
#[derive(Debug, Default, Clone, Copy)]
pub struct DenyAll;

impl Approver for DenyAll {}

/// Issues requests and checks approvals against them (host side).
#[derive(Debug)]
pub(crate) struct Gate {
    issuer: u64,
    nonces: AtomicU64,
}

impl Gate {
    pub(crate) fn new() -> Gate {
        Gate {
            issuer: crate::hash::random_u64(),
            nonces: AtomicU64::new(1),
        }
    }

    /// A new binding for one request: no approval of another request (or
    /// of another host) matches it.
    pub(crate) fn issue(&self) -> Binding {
        Binding {
            issuer: self.issuer,
            nonce: self.nonces.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Checks `decision` against `request`: `Ok(who approved)` if the call
    /// may run, `Err(why not)` otherwise.
    pub(crate) fn check(
        &self,
        request: &ApprovalRequest,
        decision: Decision,
    ) -> Result<Option<String>, String> {
        let approval = match decision {
            Decision::Approve(approval) => approval,
            Decision::Deny(reason) => return Err(reason),
        };
        if approval.plugin_sha256 != request.plugin_sha256 {
            return Err(format!(
                "the approval is for another plugin (sha256 `{}`), not `{}`",
                approval.plugin_sha256, request.plugin_sha256
            ));
        }
        if approval.tool != request.tool {
            return Err(format!(
                "the approval is for `{}`, not `{}`",
                approval.tool, request.tool
            ));
        }
        if approval.arguments_sha256 != request.arguments_sha256 {
            return Err("the approval is for other arguments".into());
        }
        if approval.binding != request.binding || request.binding.issuer != self.issuer {
            return Err(
                "the approval was given for another request; approvals are used once".into(),
            );
        }
        Ok(approval.by)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(gate: &Gate, args: &str, sha: &str) -> ApprovalRequest {
        ApprovalRequest {
            call_id: 1,
            caller: None,
            plugin: "p".into(),
            plugin_sha256: sha.into(),
            tool: "p.t".into(),
            description: String::new(),
            arguments: args.into(),
            arguments_sha256: crate::hash::sha256_hex(args.as_bytes()),
            effect: Effect::Write,
            dirs: Vec::new(),
            env: Vec::new(),
            http: Vec::new(),
            secrets: Vec::new(),
            reason: "always".into(),
            binding: gate.issue(),
        }
    }

    #[test]
    fn approval_is_accepted_once_for_its_own_request() {
        let gate = Gate::new();
        let first = request(&gate, "{}", "aa");
        let Decision::Approve(approval) = first.approve_by("ops") else {
            panic!("approve")
        };
        assert_eq!(
            gate.check(&first, Decision::Approve(approval.clone())),
            Ok(Some("ops".into()))
        );
        let second = request(&gate, "{}", "aa");
        let replayed = gate
            .check(&second, Decision::Approve(approval.clone()))
            .expect_err("a replay is refused");
        assert!(replayed.contains("approvals are used once"), "{replayed}");
        let other_host = request(&Gate::new(), "{}", "aa");
        let foreign = gate
            .check(&other_host, other_host.approve())
            .expect_err("another host's approval is refused");
        assert!(foreign.contains("another request"), "{foreign}");
        let other_tool = ApprovalRequest {
            tool: "p.other".into(),
            binding: gate.issue(),
            ..request(&gate, "{}", "aa")
        };
        let Decision::Approve(for_t) = first.approve() else {
            panic!("approve")
        };
        assert_eq!(
            gate.check(&other_tool, Decision::Approve(for_t)),
            Err("the approval is for `p.t`, not `p.other`".to_string())
        );
        assert_eq!(
            gate.check(&second, second.deny("no")),
            Err("no".to_string())
        );
    }

    #[test]
    fn default_approver_denies() {
        let gate = Gate::new();
        let request = request(&gate, "{}", "aa");
        assert!(matches!(DenyAll.decide(&request), Decision::Deny(_)));
    }
}
