//! What crosses the gate: a request as the plugin sent it, the response it
//! gets back, why a request failed (as the plugin sees it), and the record
//! of each attempt kept for the audit log. Plain data, shared by both HTTP
//! interfaces (`portcullis:tool/http` and `wasi:http`) and the gate.

use crate::audit::AuditEvent;
use std::time::Duration;

/// A request as the plugin sent it.
#[derive(Debug, Clone)]
pub(crate) struct GuestRequest {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) secret: SecretChoice,
    /// Timeouts the guest asked for; they can only shorten the host's.
    pub(crate) timeouts: GuestTimeouts,
}

/// Which secret, if any, a request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretChoice {
    /// None.
    None,
    /// The one the plugin named (`portcullis:tool/http`); denied unless
    /// granted and bound to the destination.
    Named(String),
    /// The first granted secret bound to the destination, if any
    /// (`wasi:http`, whose requests cannot name one).
    ByDestination,
}

/// Timeouts a guest supplied (`wasi:http` request options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GuestTimeouts {
    pub(crate) connect: Option<Duration>,
    /// The host hands the guest the response only once it is complete, so
    /// the guest's first byte arrives when the whole exchange is over:
    /// this bounds the whole exchange.
    pub(crate) first_byte: Option<Duration>,
}

/// A response as the plugin receives it.
#[derive(Debug, Clone)]
pub(crate) struct GuestResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// Why a request failed, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EgressError {
    Denied(String),
    InvalidRequest(String),
    Timeout(String),
    TooLarge(String),
    TooManyRequests(String),
    Upstream(String),
}

impl EgressError {
    /// The reason, whatever the kind.
    pub(crate) fn message(&self) -> &str {
        match self {
            EgressError::Denied(m)
            | EgressError::InvalidRequest(m)
            | EgressError::Timeout(m)
            | EgressError::TooLarge(m)
            | EgressError::TooManyRequests(m)
            | EgressError::Upstream(m) => m,
        }
    }
}

/// One outbound attempt, for the audit log.
#[derive(Debug, Clone)]
pub(crate) struct EgressRecord {
    /// The request's number in the call, as in its `egress_sent` record,
    /// once it reached the gate's checks; 0 before.
    pub(crate) request: u32,
    pub(crate) method: String,
    /// `scheme://host:port/path` as checked (no query), or the raw text cut
    /// short when it did not parse.
    pub(crate) destination: String,
    pub(crate) status: Option<u16>,
    pub(crate) bytes: Option<u64>,
    pub(crate) allowed: bool,
    /// Why it was refused or failed.
    pub(crate) reason: Option<String>,
    /// The secret the request named, if any.
    pub(crate) secret: Option<String>,
}

impl EgressRecord {
    /// The audit log's `egress` record of this attempt, made by call
    /// `call_id` of `tool` (`plugin.tool`).
    pub(crate) fn event(&self, call_id: u64, tool: &str) -> AuditEvent {
        AuditEvent::Egress {
            call_id,
            tool: tool.to_string(),
            request: (self.request > 0).then_some(self.request),
            method: self.method.clone(),
            destination: self.destination.clone(),
            allowed: self.allowed,
            status: self.status,
            bytes: self.bytes,
            reason: self.reason.clone(),
            secret: self.secret.clone(),
        }
    }
}

/// A record of a request that has not passed (or did not pass) the gate:
/// `url` without its query and fragment, cut short.
pub(super) fn refused_record(
    method: &str,
    url: &str,
    why: String,
    secret: Option<String>,
) -> EgressRecord {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    EgressRecord {
        request: 0,
        method: method.to_string(),
        destination: crate::text::cut(url, 256).0.to_string(),
        status: None,
        bytes: None,
        allowed: false,
        reason: Some(why),
        secret,
    }
}
