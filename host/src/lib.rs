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
//! The flow follows the modules: `manifest` (raw file) -> `policy`
//! (validated grants and limits) -> `plugin` (read once, pin, compile, check
//! imports) -> `sandbox` (fresh bounded store per call) -> `egress` (the one
//! gate every outbound HTTP request passes: allowlist, host-side
//! resolution, blocked address ranges, limits) -> `audit` (the
//! hash-chained record) -> `approval` (the gate before irreversible calls)
//! -> [`Host`] (the facade) -> [`export_tools`] (definitions for models and
//! MCP clients). Outputs carry their [`Provenance`] and are untrusted data.

mod approval;
mod arguments;
mod audit;
mod cache;
mod egress;
mod error;
mod export;
mod host;
pub mod manifest;
mod plugin;
pub mod policy;
mod provenance;
mod sandbox;
mod secrets;
mod util;

pub use approval::{Approval, ApprovalFuture, ApprovalRequest, Approver, Decision, DenyAll};
pub use audit::{
    AuditEvent, AuditHead, AuditReport, AuditSink, AuditTamper, DirRecord, FileSink,
    MAX_RECORDED_ARGUMENTS, StderrSink, TamperKind, verify_log,
};
pub use egress::{ResolveFuture, Resolver, SystemResolver};
pub use error::{Error, Limit, ToolError};
pub use export::{ExportedTools, ToolFormat, ToolNames, descriptor_json, export_tools};
pub use host::{CallContext, Grants, Host, HostBuilder, ToolDescriptor, ToolOutput};
pub use plugin::{Effect, ImportStatus, InspectedTool, Inspection, inspect, sha256_hex};
pub use policy::{
    ApprovalRule, ApprovalSetting, DirGrant, DirMode, HttpRule, Limits, PluginConfig, PluginPolicy,
};
pub use provenance::{
    INJECTION_PATTERNS, InjectionFlag, Provenance, Trust, render_for_model, screen,
};
pub use sandbox::{Captured, LogLevel, LogRecord};
pub use secrets::{
    Destination, EnvSource, FileSource, InjectRule, Injection, MIN_SECRET_BYTES, Scrubber, Secret,
    SecretConfig, SecretFuture, SecretPolicy, SecretRequest, SecretSource, StreamScrubber,
};
pub use tokio_util::sync::CancellationToken;
