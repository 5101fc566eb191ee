//! Portcullis runs AI-agent tools as sandboxed WebAssembly components.
//!
//! An agent lets a persuadable model choose which tool to run with which
//! arguments; Portcullis makes that survivable. Each tool lives in a plugin,
//! a WASI 0.2 component pinned by sha256, which gets only what its policy
//! grants: preopened directories (read-only unless marked read-write),
//! explicit environment variables, HTTP requests to the destinations of its
//! allowlist through the host's egress gate, nothing else: no sockets, no
//! host environment or stdio. Every call runs in a fresh instance bounded by
//! fuel, memory, a wall-clock deadline and an output cap.
//!
//! ```no_run
//! use portcullis::{CallContext, Host};
//!
//! # async fn run() -> Result<(), portcullis::Error> {
//! let host = Host::from_manifest("plugins/portcullis.toml").await?;
//! for tool in host.tools() {
//!     println!("{} ({}): {}", tool.name, tool.effect.as_str(), tool.description);
//! }
//! let output = host
//!     .call("files.list_dir", r#"{"path": "/sample"}"#, &CallContext::new())
//!     .await?;
//! println!("{}", output.value);
//! # Ok(())
//! # }
//! ```
//!
//! # Module map
//!
//! Each module is one step of the flow; data moves forward through them.
//! Loading: `manifest` (the file's raw shapes) -> `policy` (validated
//! grants, limits, approval settings) -> `secrets` (sources, destinations,
//! injection, scrubbing) -> `plugin` (read once, pin, compile or load from
//! the authenticated cache, check imports). Calling: [`Host`] (`host`, the
//! facade) -> `arguments` (parsed once, checked against the schema) ->
//! `approval` (the gate before irreversible calls) -> `sandbox` (a fresh
//! bounded store per call) -> `egress` (the one gate every outbound request
//! passes) -> `secrets` (attached inside the gate, scrubbed from what comes
//! back). `audit` (the hash-chained record) is a sink beside both paths.
//! What the host offers is a [`ToolDescriptor`] (`descriptor`), exported
//! for models and MCP clients by `formats`; `mcp` serves a [`Host`] to MCP
//! clients (`portcullis serve`). Outputs carry their
//! [`Provenance`] and are untrusted data. `hash`, `text` and `fs` are the
//! small helpers every step uses.
//!
//! Where design.md lists `secrets` after `egress`, the code has it lower:
//! the gate attaches and scrubs with the types `secrets` defines, so
//! `secrets` is below `egress`, and both paths reach it.
//!
//! Imports only point down this list (a test reads the sources and fails on
//! a backward `use crate::...`): `hash`, `text`, `fs`, `error`, `manifest`,
//! `policy`, `secrets`, `audit`, `arguments`, `provenance`, `egress`,
//! `sandbox`, `plugin`, `approval`, `descriptor`, `formats`, `host`, `mcp`.

mod approval;
mod arguments;
mod audit;
mod descriptor;
mod egress;
mod error;
mod formats;
mod fs;
mod hash;
mod host;
#[cfg(test)]
mod layering;
pub mod manifest;
mod mcp;
mod plugin;
pub mod policy;
mod provenance;
mod sandbox;
mod secrets;
mod text;

pub use approval::{Approval, ApprovalFuture, ApprovalRequest, Approver, Decision, DenyAll};
pub use arguments::MAX_ARGUMENT_BYTES;
pub use audit::{
    AuditEvent, AuditHead, AuditReport, AuditSink, AuditTamper, CallOrigin, DirRecord, FileSink,
    MAX_RECORDED_ARGUMENTS, StderrSink, TamperKind, verify_log,
};
pub use descriptor::{ToolDescriptor, descriptor_json};
pub use egress::{
    DEFAULT_FIXTURE_ADDRESS, Fixture, Fixtures, Received, Recorded, ResolveFuture, Resolver,
    SystemResolver,
};
pub use error::{Error, Limit, ToolError};
pub use formats::{ExportedTools, ToolFormat, ToolNames, export_tools};
pub use hash::sha256_hex;
pub use host::{CallContext, Host, HostBuilder, ToolOutput};
pub use mcp::{
    BadToken, BearerToken, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_JSON_DEPTH, HttpOptions, MCP_PATH,
    MIN_STATE_KEY_BYTES, MIN_TOKEN_BYTES, McpServer, StateKey, StateKeyTooShort, Transport,
};
pub use plugin::{ImportStatus, InspectedTool, Inspection, inspect, tool_diff, tool_list_hash};
pub use policy::{
    ApprovalRule, ApprovalSetting, DirGrant, DirMode, Effect, Grants, HttpRule, Limits,
    PluginConfig, PluginPolicy,
};
pub use provenance::{
    INJECTION_PATTERNS, InjectionFlag, Provenance, Trust, render_for_model, screen,
};
pub use sandbox::{Captured, InstanceAllocation, LogLevel, LogRecord};
pub use secrets::{
    Destination, EnvSource, FileSource, InjectRule, Injection, MIN_SECRET_BYTES, Scrubber, Secret,
    SecretConfig, SecretFuture, SecretPolicy, SecretRequest, SecretSource, StreamScrubber,
};
pub use text::{escape_controls, json_for_terminal};
pub use tokio_util::sync::CancellationToken;
