//! The one public error type. Each variant names its culprit (plugin, tool,
//! path, limit) so that an agent runtime can react without parsing text.

use std::fmt;
use std::path::PathBuf;

/// A limit the host enforces on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// CPU: the call used up its fuel.
    Fuel,
    /// The total size of the instance's linear memories.
    Memory,
    /// A fixed per-call cap no manifest setting raises: table elements or
    /// open resource handles (see [`caps`](crate::policy::caps)).
    Resources,
    /// Wall-clock time.
    Time,
    /// The size of the tool's output.
    Output,
    /// Bytes written or files, directories and links created through
    /// read-write grants in one call (`limits.disk_write`,
    /// `limits.disk_files`).
    Disk,
}

impl Limit {
    /// The name used in manifests and messages: `fuel`, `memory`,
    /// `resources`, `time`, `output`, `disk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Fuel => "fuel",
            Limit::Memory => "memory",
            Limit::Resources => "resources",
            Limit::Time => "time",
            Limit::Output => "output",
            Limit::Disk => "disk",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure that the tool itself chose to report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The arguments made no sense to the tool.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Something the arguments named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The tool refused, or a grant did not allow the action.
    #[error("denied: {0}")]
    Denied(String),
    /// The tool failed for a reason of its own.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Everything that can go wrong loading plugins or calling tools.
///
/// Messages are lowercase with values in backticks; [`Error::hint`] adds
/// what the user can do about it, where there is something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The manifest file could not be read.
    #[error("failed to read manifest `{path}`: {source}")]
    ManifestRead {
        /// The manifest's path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The manifest (or a builder configuration) is invalid.
    #[error("invalid manifest `{path}`: {message}")]
    Manifest {
        /// The manifest's path (`<builder>` for programmatic configuration).
        path: PathBuf,
        /// What is wrong, naming the plugin and field.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },

    /// A plugin's component file could not be read.
    #[error("plugin `{plugin}`: failed to read `{path}`: {source}")]
    PluginRead {
        /// The plugin's name in the manifest.
        plugin: String,
        /// The component's path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The component's bytes do not hash to the pinned sha256.
    #[error(
        "plugin `{plugin}`: sha256 of `{path}` does not match the pin\n  expected: {expected}\n  actual:   {actual}"
    )]
    PinMismatch {
        /// The plugin's name in the manifest.
        plugin: String,
        /// The component's path.
        path: PathBuf,
        /// The sha256 in the manifest.
        expected: String,
        /// The sha256 of the bytes read.
        actual: String,
    },

    /// The plugin's tool list (names, descriptions, schemas, effects) no
    /// longer hashes to its `tools_sha256` pin.
    #[error(
        "plugin `{plugin}`: its tool list changed since it was pinned\n  expected: {expected}\n  actual:   {actual}\n{diff}"
    )]
    ToolListChanged {
        /// The plugin's name in the manifest.
        plugin: String,
        /// The `tools_sha256` in the manifest.
        expected: String,
        /// The sha256 of the tool list the plugin declares now.
        actual: String,
        /// What changed, one line per tool or field.
        diff: String,
    },

    /// The file is not a WebAssembly component wasmtime can compile.
    #[error("plugin `{plugin}`: `{path}` is not a valid WebAssembly component: {reason}")]
    InvalidComponent {
        /// The plugin's name in the manifest.
        plugin: String,
        /// The component's path.
        path: PathBuf,
        /// What the compiler said.
        reason: String,
    },

    /// The component imports interfaces that the host does not grant. The
    /// host fails closed: nothing is stubbed.
    #[error("plugin `{plugin}` imports interfaces the host does not grant: {}", imports.join(", "))]
    ForbiddenImports {
        /// The plugin's name in the manifest.
        plugin: String,
        /// Every offending import, e.g. `wasi:sockets/tcp@0.2.6`.
        imports: Vec<String>,
    },

    /// The component does not implement the `portcullis:tool` world, or its
    /// tool list is invalid.
    #[error("plugin `{plugin}` is not a valid portcullis plugin: {reason}")]
    InvalidPlugin {
        /// The plugin's name in the manifest.
        plugin: String,
        /// What is wrong.
        reason: String,
    },

    /// No plugin offers the tool (or an unqualified name is ambiguous).
    #[error("unknown tool `{tool}`")]
    UnknownTool {
        /// The name asked for.
        tool: String,
        /// The tools that exist, for the hint.
        available: Vec<String>,
    },

    /// The arguments are not a JSON object matching the tool's input schema.
    /// The plugin did not run.
    #[error("invalid arguments for `{tool}`{}: {reason}", at_pointer(pointer))]
    InvalidArguments {
        /// The qualified tool name (`plugin.tool`).
        tool: String,
        /// JSON Pointer to the failing field (`""` for the whole value).
        pointer: String,
        /// What is wrong.
        reason: String,
    },

    /// The call hit one of its limits and was stopped.
    #[error("`{tool}` exceeded its {limit} limit: {detail}")]
    LimitExceeded {
        /// The qualified tool name (`plugin.tool`).
        tool: String,
        /// Which limit.
        limit: Limit,
        /// The configured value and what happened.
        detail: String,
    },

    /// The tool ran and reported an error.
    #[error("`{tool}` failed: {error}")]
    Tool {
        /// The qualified tool name (`plugin.tool`).
        tool: String,
        /// The error the tool chose.
        error: ToolError,
    },

    /// The plugin crashed (panic, abort, stack overflow, invalid memory
    /// access, exit). The instance is gone; the host is unaffected.
    #[error("`{tool}` crashed: {reason}")]
    Crashed {
        /// The qualified tool name (`plugin.tool`).
        tool: String,
        /// What happened, e.g. `stack overflow`.
        reason: String,
    },

    /// The caller cancelled the call.
    #[error("`{tool}` was cancelled")]
    Cancelled {
        /// The qualified tool name (`plugin.tool`).
        tool: String,
    },

    /// The plugin returned output that is not JSON, or that does not match
    /// the output schema it declared.
    #[error("`{tool}` returned invalid output: {reason}")]
    InvalidOutput {
        /// The qualified tool name (`plugin.tool`).
        tool: String,
        /// What is wrong.
        reason: String,
    },

    /// Two tools map to the same model-facing name, so a model's call could
    /// not be dispatched unambiguously.
    #[error("tools {} would both be offered to models as `{model_name}`", tools.join(" and "))]
    NameCollision {
        /// The model-facing name.
        model_name: String,
        /// The colliding `plugin.tool` names.
        tools: Vec<String>,
    },

    /// The call needed approval and did not get it: the approver denied
    /// it, there was none, or the approval it gave was not for this exact
    /// request. The plugin did not run.
    #[error("`{tool}` was not approved: {reason}")]
    ApprovalDenied {
        /// The qualified tool name (`plugin.tool`).
        tool: String,
        /// Why.
        reason: String,
    },

    /// Nobody decided on the call's approval within the host's approval
    /// deadline (`HostBuilder::approval_timeout`, default 5 minutes). The
    /// plugin did not run.
    #[error("`{tool}` was not approved: approval timed out after {after:?}")]
    ApprovalTimedOut {
        /// The qualified tool name (`plugin.tool`).
        tool: String,
        /// How long the host waited.
        after: std::time::Duration,
    },

    /// The call piled up more policy denials than allowed
    /// (`audit.max_denials`) and was stopped.
    #[error("`{tool}` was stopped as suspicious after {denials} denials")]
    Suspicious {
        /// The qualified tool name (`plugin.tool`).
        tool: String,
        /// How many denials it piled up.
        denials: u32,
    },

    /// Every instance slot of the host stayed taken for the whole bounded
    /// wait: too many calls at once. The plugin did not run; retry later.
    #[error("`{tool}` was refused: all {slots} instance slots stayed busy for {waited:?}")]
    Busy {
        /// The qualified tool name (`plugin.tool`).
        tool: String,
        /// The host's slots (calls running at once).
        slots: u32,
        /// How long the call waited for a slot.
        waited: std::time::Duration,
    },

    /// An audit record could not be written, so the call did not run or its
    /// result is withheld: nothing happens off the record.
    #[error("audit log: {0}")]
    Audit(String),

    /// A failure inside the host itself (a bug, or the machine ran out of a
    /// resource). The call did not complete; the host keeps serving.
    #[error("internal host error: {0}")]
    Internal(String),

    /// The MCP server refused to start as configured (e.g. HTTP on a
    /// public address without a bearer token).
    #[error("{message}")]
    ServeRefused {
        /// What was refused.
        message: String,
        /// What to do instead.
        hint: String,
    },
}

/// ` at `/field`` for a non-empty JSON Pointer.
fn at_pointer(pointer: &str) -> String {
    if pointer.is_empty() {
        String::new()
    } else {
        format!(" at `{pointer}`")
    }
}

impl Error {
    /// What the user can do about this error, if anything.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Manifest { hint, .. } => hint.clone(),
            Error::ServeRefused { hint, .. } => Some(hint.clone()),
            Error::PinMismatch { .. } => Some(
                "if you rebuilt the plugin on purpose, run `portcullis pin MANIFEST` to update the pins"
                    .into(),
            ),
            Error::InvalidComponent { .. } => Some(
                "build plugins for `wasm32-wasip2` (e.g. `plugins/build.sh`); core modules are not accepted"
                    .into(),
            ),
            Error::ForbiddenImports { .. } => Some(
                "plugins may import `portcullis:tool/log` and the WASI 0.2 cli, clocks, filesystem, io and random interfaces; `portcullis:tool/http` and `wasi:http` (types, outgoing-handler) need `http` entries in the plugin's manifest entry; `wasi:sockets` is never granted (a plugin whose language runtime imports it without using it may set `deny_imports = [\"wasi:sockets/*\"]`: every socket operation then fails with access-denied)"
                    .into(),
            ),
            Error::ToolListChanged { .. } => Some(
                "review the changes; if you trust them, run `portcullis pin --accept-tool-changes MANIFEST`"
                    .into(),
            ),
            Error::InvalidPlugin { .. } => Some(
                "export the tools with `portcullis_sdk::export_plugin!` (see the README, \"Write your first tool\")"
                    .into(),
            ),
            Error::UnknownTool { available, .. } if !available.is_empty() => {
                Some(format!("available tools: {}", available.join(", ")))
            }
            Error::PluginRead { .. } => Some(
                "check `source` in the manifest: it is relative to the manifest's folder (bundled plugins are built by `plugins/build.sh`)"
                    .into(),
            ),
            Error::InvalidArguments { .. } => Some(
                "arguments are one JSON object matching the tool's input schema; `portcullis tools MANIFEST` shows the schemas"
                    .into(),
            ),
            Error::NameCollision { .. } => Some(
                "rename one of the plugins in the manifest so that `plugin__tool` names differ"
                    .into(),
            ),
            Error::ApprovalDenied { .. } => Some(
                "approvals are set per tool in the manifest (`[plugins.NAME.tools.TOOL] approval`); on the command line, answer the prompt or pass `--approve`"
                    .into(),
            ),
            Error::ApprovalTimedOut { .. } => Some(
                "the approver did not answer in time; embedders set the deadline with `HostBuilder::approval_timeout`"
                    .into(),
            ),
            Error::Busy { .. } => Some(
                "retry later, or raise the host's slots (`HostBuilder::max_concurrent_calls`) or its wait (`HostBuilder::busy_wait`)".into(),
            ),
            Error::Audit(_) => Some(
                "check that the audit destination (`[audit] path`, `--audit FILE` or the embedder's sink) is writable".into(),
            ),
            Error::LimitExceeded {
                limit: Limit::Resources,
                ..
            } => Some(
                "this cap is fixed: the plugin holds too many tables, table elements or open handles at once".into(),
            ),
            Error::LimitExceeded { limit, .. } => Some(format!(
                "raise `limits.{}` for this plugin in the manifest if the tool legitimately needs more",
                match limit {
                    Limit::Time => "timeout",
                    Limit::Disk => "disk_write` or `limits.disk_files",
                    other => other.as_str(),
                }
            )),
            _ => None,
        }
    }

    /// A short, stable name for what went wrong, as agent runtimes and
    /// the rendering for models use it: `unknown_tool`,
    /// `invalid_arguments`, `approval_denied`, `approval_timed_out`,
    /// `suspicious`, `busy`, `limit`, `tool_error`, `crashed`, `cancelled`,
    /// `invalid_output`, `audit_failed`, `internal`, or `load` for
    /// everything that happens while loading. A call's `call_ended` audit
    /// record uses the same names for its outcome.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::UnknownTool { .. } => "unknown_tool",
            Error::InvalidArguments { .. } => "invalid_arguments",
            Error::ApprovalDenied { .. } => "approval_denied",
            Error::ApprovalTimedOut { .. } => "approval_timed_out",
            Error::Suspicious { .. } => "suspicious",
            Error::Busy { .. } => "busy",
            Error::LimitExceeded { .. } => "limit",
            Error::Tool { .. } => "tool_error",
            Error::Crashed { .. } => "crashed",
            Error::Cancelled { .. } => "cancelled",
            Error::InvalidOutput { .. } => "invalid_output",
            Error::Audit(_) => "audit_failed",
            Error::Internal(_) => "internal",
            _ => "load",
        }
    }

    /// The qualified name (`plugin.tool`) of the tool whose call failed,
    /// for the errors of a call to a tool that exists. (The name in
    /// [`Error::UnknownTool`] is whatever the caller asked for, so it is not
    /// one.)
    pub fn tool(&self) -> Option<&str> {
        match self {
            Error::InvalidArguments { tool, .. }
            | Error::LimitExceeded { tool, .. }
            | Error::Tool { tool, .. }
            | Error::Crashed { tool, .. }
            | Error::Cancelled { tool }
            | Error::InvalidOutput { tool, .. }
            | Error::ApprovalDenied { tool, .. }
            | Error::ApprovalTimedOut { tool, .. }
            | Error::Busy { tool, .. }
            | Error::Suspicious { tool, .. } => Some(tool),
            _ => None,
        }
    }

    /// The limit this error reports, if it is a limit error.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            Error::LimitExceeded { limit, .. } => Some(*limit),
            _ => None,
        }
    }

    pub(crate) fn manifest(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Manifest {
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, new_hint: impl Into<String>) -> Self {
        if let Error::Manifest { hint, .. } = &mut self {
            *hint = Some(new_hint.into());
        }
        self
    }
}
