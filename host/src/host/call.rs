//! A call on its way through the host: arguments checked, the call
//! recorded (with a guard that records it as `abandoned` if its future is
//! dropped), the approval gate (with a deadline), the sandbox run (whose
//! gate writes the egress records as requests go), the one denial budget
//! ([`CallLog`]), then the output checked, scrubbed and marked as untrusted
//! data.

use super::Host;
use crate::approval::{ApprovalRequest, Approver};
use crate::arguments;
use crate::audit::{self, AuditEvent, AuditLog, CallOrigin, MAX_RECORDED_ARGUMENTS};
use crate::egress::{CallEgress, CallFacts, CallLog};
use crate::error::Error;
use crate::hash::sha256_hex;
use crate::provenance::{self, InjectionFlag, Provenance, Trust};
use crate::sandbox::{Captured, Failure, Invocation, LogRecord, Returned, Run};
use crate::secrets::Scrubber;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Per-call context from the agent runtime.
#[derive(Clone, Default)]
pub struct CallContext {
    caller: Option<String>,
    origin: Option<CallOrigin>,
    cancel: CancellationToken,
    /// Asks instead of the host's approver for this call only (a server
    /// that can ask the person behind this one client).
    approver: Option<Arc<dyn Approver>>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("caller", &self.caller)
            .field("origin", &self.origin)
            .field("cancel", &self.cancel)
            .field("approver", &self.approver.is_some())
            .finish()
    }
}

impl CallContext {
    /// A context with no caller identity and a fresh cancellation token.
    pub fn new() -> Self {
        CallContext::default()
    }

    /// Names who is calling (a user, session or agent id) for the record.
    pub fn caller(mut self, caller: impl Into<String>) -> Self {
        self.caller = Some(caller.into());
        self
    }

    /// Records how the call came (transport, protocol, client) in its
    /// `call_started` record.
    pub fn origin(mut self, origin: CallOrigin) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Cancels the call when `token` is cancelled.
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Asks `approver` (instead of the host's
    /// [`HostBuilder::approver`](crate::HostBuilder::approver)) if this call
    /// needs approval. The host's checks stay the same: the decision must be
    /// an approval of this very request (plugin sha256, tool, argument
    /// digest, a nonce used once), given before the host's approval
    /// deadline, and it is recorded like any other.
    pub fn approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = Some(approver);
        self
    }

    /// The caller identity, if set.
    pub fn caller_id(&self) -> Option<&str> {
        self.caller.as_deref()
    }
}

/// The result of a successful call. Its value is untrusted data: hand it to
/// a model with [`ToolOutput::render_for_model`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolOutput {
    /// `plugin.tool`.
    pub tool: String,
    /// The sha256 of the plugin that produced it.
    pub plugin_sha256: String,
    /// The call's id, as in the audit log.
    pub call_id: u64,
    /// Where it came from; always [`Trust::Untrusted`].
    pub provenance: Provenance,
    /// Known prompt-injection patterns found in it, when the screen is on
    /// (the value is never changed).
    pub flags: Vec<InjectionFlag>,
    /// The output (untrusted data).
    pub value: Value,
    /// What the plugin wrote to stdout.
    pub stdout: Captured,
    /// What the plugin wrote to stderr.
    pub stderr: Captured,
    /// What the plugin logged.
    pub logs: Vec<LogRecord>,
    /// Log messages dropped past the cap.
    pub logs_dropped: u64,
    /// Fuel the call used.
    pub fuel_used: u64,
    /// Wall-clock time of the call.
    pub duration: Duration,
    /// The host's secrets, scrubbed once more from the rendered text.
    scrubber: Arc<Scrubber>,
}

impl ToolOutput {
    /// The output as text for a model: JSON inside delimiters it cannot
    /// close or imitate, labelled with its provenance. See
    /// [`render_for_model`](crate::render_for_model).
    ///
    /// The value was scrubbed of secret values when the call returned; the
    /// rendered text is scrubbed again, for forms that only appear in JSON
    /// text.
    pub fn render_for_model(&self) -> String {
        let text = provenance::render_for_model(&self.provenance, &self.value);
        self.scrubber.scrub_str(&text).into_owned()
    }
}

/// What the record of a call's end needs from the run.
#[derive(Default)]
struct RunStats {
    fuel_used: u64,
    stdout_bytes: u64,
    stderr_bytes: u64,
    log_messages: u64,
    output_bytes: Option<usize>,
}

impl Host {
    /// Calls `tool` (`plugin.tool`, or just `tool` when only one plugin has
    /// it) with `arguments`, a JSON object as text.
    ///
    /// The arguments are parsed once (duplicate keys refused) and validated
    /// against the tool's input schema. If the tool's approval setting says
    /// so, the host then asks the call's [`CallContext::approver`] or else its
    /// [`Approver`](crate::Approver), and runs the plugin only on
    /// an approval bound to this exact request. The plugin receives exactly
    /// the validated bytes, in a fresh instance. The call's start, approval,
    /// denials and end are recorded before this returns.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTool`], [`Error::InvalidArguments`] (the plugin did
    /// not run), [`Error::ApprovalDenied`], [`Error::Suspicious`],
    /// [`Error::Tool`] (the tool reported an error),
    /// [`Error::LimitExceeded`], [`Error::Crashed`], [`Error::Cancelled`],
    /// [`Error::InvalidOutput`], [`Error::Audit`], [`Error::Internal`] (the
    /// sandbox could not be set up, e.g. a granted directory vanished).
    ///
    /// Secret values (raw and encoded) are scrubbed from everything this
    /// returns or records: the output, captured stdio, logs, the audit
    /// records and the error's message.
    pub async fn call(
        &self,
        tool: &str,
        arguments: &str,
        ctx: &CallContext,
    ) -> Result<ToolOutput, Error> {
        self.call_unscrubbed_errors(tool, arguments, ctx)
            .await
            .map_err(|e| e.scrubbed(&self.inner.scrubber))
    }

    async fn call_unscrubbed_errors(
        &self,
        tool: &str,
        arguments: &str,
        ctx: &CallContext,
    ) -> Result<ToolOutput, Error> {
        let started = Instant::now();
        let (p, t) = self.resolve(tool)?;
        let plugin = &self.inner.plugins[p];
        let def = &plugin.tools[t];
        let qualified = format!("{}.{}", plugin.policy.name, def.name);
        let invalid = |pointer: String, reason: String| Error::InvalidArguments {
            tool: qualified.clone(),
            pointer,
            reason,
        };
        arguments::screen(arguments, &self.inner.scrubber)
            .map_err(|r| invalid(String::new(), r))?;
        let value = arguments::parse_object(arguments).map_err(|r| invalid(String::new(), r))?;
        def.validator
            .check(&value)
            .map_err(|(pointer, reason)| invalid(pointer, reason))?;

        let call_id = self.inner.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let arguments_sha256 = sha256_hex(arguments::canonical(&value).as_bytes());
        // Scrubbed before the cut, which could leave a secret's prefix.
        let scrubbed = self.inner.scrubber.scrub_str(arguments);
        let (recorded, truncated) = crate::text::cut(&scrubbed, MAX_RECORDED_ARGUMENTS);
        let audit = &self.inner.audit;
        let call_started = audit.send(AuditEvent::CallStarted {
            call_id,
            caller: ctx.caller.clone(),
            origin: ctx.origin.clone(),
            tool: qualified.clone(),
            plugin_sha256: plugin.policy.sha256.clone(),
            arguments: recorded.to_string(),
            arguments_bytes: arguments.len(),
            arguments_truncated: truncated,
            arguments_sha256: arguments_sha256.clone(),
        });
        // From here on the call is on the record: if its future is dropped
        // (an embedder's timeout, a client that went away), the guard
        // records how it ended.
        let mut guard = Abandoned {
            log: audit,
            call_id,
            tool: &qualified,
            started,
            armed: true,
        };
        call_started.written().await?;

        let mut stats = RunStats::default();
        let call_log = Arc::new(CallLog::new(
            Arc::clone(audit),
            call_id,
            &qualified,
            self.inner.max_denials,
        ));
        let call = Call {
            p,
            t,
            call_id,
            tool: &qualified,
            arguments,
            value: &value,
            arguments_sha256,
            ctx,
            log: &call_log,
        };
        let result = self.attempt(&call, &mut stats).await;
        let (outcome, limit) = audit::outcome(result.as_ref().err());
        let duration = started.elapsed();
        tracing::debug!(
            tool = %qualified,
            call_id,
            caller = ctx.caller.as_deref().unwrap_or("-"),
            fuel = stats.fuel_used,
            duration = ?duration,
            outcome,
            "call finished"
        );
        let call_ended = audit.send(AuditEvent::CallEnded {
            call_id,
            tool: qualified.clone(),
            outcome,
            error: result.as_ref().err().map(ToString::to_string),
            limit,
            cancelled: outcome == "cancelled",
            fuel_used: stats.fuel_used,
            duration_us: u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
            output_bytes: stats.output_bytes,
            stdout_bytes: stats.stdout_bytes,
            stderr_bytes: stats.stderr_bytes,
            log_messages: stats.log_messages,
        });
        guard.armed = false;
        call_ended.written().await?;
        result
    }

    /// Asks for approval if needed, then runs the call.
    async fn attempt(&self, call: &Call<'_>, stats: &mut RunStats) -> Result<ToolOutput, Error> {
        let inner = &*self.inner;
        let plugin = &inner.plugins[call.p];
        let def = &plugin.tools[call.t];
        self.approve(call).await?;

        // The call's egress gate, handed to the sandbox ready to use: the
        // call's deadline, its audit trail and denial budget, who is
        // calling.
        let egress = inner.egress[call.p].as_ref().map(|grants| {
            Arc::new(grants.call(
                tokio::time::Instant::now() + plugin.policy.limits.timeout,
                Arc::clone(call.log),
                CallFacts {
                    tool: def.name.clone(),
                    call_id: call.call_id,
                    caller: call.ctx.caller.clone(),
                },
            ))
        });
        let mut run = inner
            .sandbox
            .run(
                &plugin.pre,
                &plugin.policy,
                Invocation::Call {
                    tool: &def.name,
                    arguments: call.arguments,
                    egress: egress.clone(),
                },
                &call.ctx.cancel,
            )
            .await;
        stats.fuel_used = run.fuel_used;
        stats.stdout_bytes = run.stdout.total();
        stats.stderr_bytes = run.stderr.total();
        stats.log_messages = run.logs.len() as u64 + run.logs_dropped;
        // The gate wrote its records as the requests went; one it could
        // not write fails the call (the request it was for did not leave).
        if let Some(reason) = call.log.failure() {
            return Err(Error::Audit(reason));
        }
        if call.log.stopped().is_cancelled() || matches!(run.result, Err(Failure::Suspicious(_))) {
            return Err(Error::Suspicious {
                tool: call.tool.to_string(),
                denials: call.log.denials(),
            });
        }
        // Named at the end of the error, if the host keeps core dumps.
        let dumped = match (&inner.core_dumps, run.core_dump.take()) {
            (Some(dumps), Some(bytes)) => {
                dumps.write(&plugin.policy.name, call.call_id, bytes).await
            }
            _ => String::new(),
        };
        // The host's scrubber, grown by any secret value a source gave out
        // for this call only.
        let scrubber = egress
            .as_deref()
            .map_or_else(|| Arc::clone(&inner.scrubber), CallEgress::scrubber);
        let Run {
            result,
            stdout,
            stderr,
            logs,
            logs_dropped,
            fuel_used,
            duration,
            ..
        } = run;
        let tool = call.tool.to_string();
        let result = match result {
            Ok(Returned::Output(text)) => {
                stats.output_bytes = Some(text.len());
                self.checked_output(call, &text, &scrubber)
                    .await
                    .map(|(value, flags)| ToolOutput {
                        provenance: Provenance {
                            plugin: plugin.policy.name.clone(),
                            plugin_sha256: plugin.policy.sha256.clone(),
                            tool: tool.clone(),
                            call_id: call.call_id,
                            write_access: plugin.policy.writable(),
                            trust: Trust::Untrusted,
                        },
                        tool,
                        plugin_sha256: plugin.policy.sha256.clone(),
                        call_id: call.call_id,
                        flags,
                        value,
                        stdout,
                        stderr,
                        logs,
                        logs_dropped,
                        fuel_used,
                        duration,
                        scrubber: Arc::clone(&scrubber),
                    })
            }
            Ok(Returned::ToolError(e)) => Err(Error::Tool {
                tool,
                error: e.into(),
            }),
            Ok(Returned::Tools(_)) => Err(Error::Internal(format!(
                "`{tool}`: the sandbox returned a tool list for a call"
            ))),
            Err(failure) => Err(failure.into_error(tool, &dumped)),
        };
        result.map_err(|e| e.scrubbed(&scrubber))
    }

    /// The approval gate: asks the approver when the tool's setting says
    /// so, and lets the call go on only on an approval bound to it.
    async fn approve(&self, call: &Call<'_>) -> Result<(), Error> {
        let inner = &*self.inner;
        let plugin = &inner.plugins[call.p];
        let def = &plugin.tools[call.t];
        let tool = call.tool.to_string();
        let Some(reason) = inner.approvals[call.p][call.t].requires(call.value) else {
            return Ok(());
        };
        let grants = plugin.policy.grants();
        let request = ApprovalRequest {
            call_id: call.call_id,
            caller: call.ctx.caller.clone(),
            plugin: plugin.policy.name.clone(),
            plugin_sha256: plugin.policy.sha256.clone(),
            tool: tool.clone(),
            description: def.description.clone(),
            arguments: inner.scrubber.scrub_str(call.arguments).into_owned(),
            arguments_sha256: call.arguments_sha256.clone(),
            effect: plugin.effect(call.t),
            dirs: grants.dirs,
            env: grants.env,
            http: grants.http,
            secrets: grants.secrets,
            reason: reason.clone(),
            binding: inner.gate.issue(),
        };
        inner
            .audit
            .record(AuditEvent::ApprovalRequested {
                call_id: call.call_id,
                tool: tool.clone(),
                plugin_sha256: request.plugin_sha256.clone(),
                arguments_sha256: request.arguments_sha256.clone(),
                effect: request.effect.as_str(),
                reason,
            })
            .await?;
        // Nobody waits forever: past the deadline the call is refused, and
        // recorded as such, like any refusal.
        let waited = inner.approval_timeout;
        let approver = call.ctx.approver.as_deref().unwrap_or(&*inner.approver);
        let decision = tokio::select! {
            decision = tokio::time::timeout(waited, approver.approve(&request)) => decision.ok(),
            () = call.ctx.cancel.cancelled() => return Err(Error::Cancelled { tool }),
        };
        let timed_out = decision.is_none();
        let checked = match decision {
            Some(decision) => inner.gate.check(&request, decision),
            None => Err(format!("approval timed out after {waited:?}")),
        };
        inner
            .audit
            .record(AuditEvent::ApprovalDecided {
                call_id: call.call_id,
                tool: tool.clone(),
                approved: checked.is_ok(),
                by: checked.as_ref().ok().cloned().flatten(),
                approver: if call.ctx.approver.is_some() {
                    "client"
                } else {
                    "operator"
                },
                reason: checked.as_ref().err().cloned(),
            })
            .await?;
        if let Err(reason) = checked {
            if call.log.deny("approval", &reason).await? {
                return Err(Error::Suspicious {
                    tool,
                    denials: call.log.denials(),
                });
            }
            if timed_out {
                return Err(Error::ApprovalTimedOut {
                    tool,
                    after: waited,
                });
            }
            return Err(Error::ApprovalDenied { tool, reason });
        }
        Ok(())
    }

    /// The plugin's output text as a checked value: JSON, matching its
    /// output schema, scrubbed, and screened when the screen is on.
    async fn checked_output(
        &self,
        call: &Call<'_>,
        text: &str,
        scrubber: &Scrubber,
    ) -> Result<(Value, Vec<InjectionFlag>), Error> {
        let inner = &*self.inner;
        let def = &inner.plugins[call.p].tools[call.t];
        let tool = call.tool;
        let mut value: Value = serde_json::from_str(text).map_err(|e| Error::InvalidOutput {
            tool: tool.to_string(),
            reason: format!("not JSON: {e}"),
        })?;
        if let Some(schema) = &def.output_validator {
            schema
                .check(&value)
                .map_err(|(pointer, reason)| Error::InvalidOutput {
                    tool: tool.to_string(),
                    reason: format!("does not match its output schema at `{pointer}`: {reason}"),
                })?;
        }
        // After validation (the schema sees what the plugin returned),
        // before the screen (whose pointers show keys).
        scrubber.scrub_json(&mut value);
        let flags = if inner.screen {
            provenance::screen(&value)
        } else {
            Vec::new()
        };
        if !flags.is_empty() {
            let flags: Vec<String> = flags.iter().map(ToString::to_string).collect();
            tracing::warn!(tool = %tool, call_id = call.call_id, ?flags, "output matches prompt-injection patterns");
            inner
                .audit
                .record(AuditEvent::OutputFlagged {
                    call_id: call.call_id,
                    tool: tool.to_string(),
                    flags,
                })
                .await?;
        }
        Ok((value, flags))
    }
}

/// One call on its way through [`Host::attempt`].
struct Call<'a> {
    p: usize,
    t: usize,
    call_id: u64,
    tool: &'a str,
    arguments: &'a str,
    value: &'a Value,
    arguments_sha256: String,
    ctx: &'a CallContext,
    /// The call's audit trail and its one denial budget.
    log: &'a Arc<CallLog>,
}

/// Records a call whose future was dropped before it ended (an embedder's
/// timeout, a client that went away) as `abandoned`. The record is queued
/// from `drop` without waiting; the writer writes it after everything the
/// call queued before.
struct Abandoned<'a> {
    log: &'a AuditLog,
    call_id: u64,
    tool: &'a str,
    started: Instant,
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        tracing::warn!(call_id = self.call_id, tool = self.tool, "call abandoned");
        self.log.record_detached(AuditEvent::CallEnded {
            call_id: self.call_id,
            tool: self.tool.to_string(),
            outcome: "abandoned",
            error: Some("the call's future was dropped before the call ended".into()),
            limit: None,
            cancelled: false,
            fuel_used: 0,
            duration_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            output_bytes: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
            log_messages: 0,
        });
    }
}
