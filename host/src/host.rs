//! The public facade: build a [`Host`] once, list its tools, call them.

use crate::arguments;
use crate::error::{Error, ToolError};
use crate::manifest::Manifest;
use crate::plugin::{Effect, LoadedPlugin};
use crate::policy::{self, DirGrant, DirMode, PluginConfig, PluginPolicy};
use crate::sandbox::{Captured, Failure, LogRecord, Request, Response, Sandbox, WitToolError};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs tools from pinned, sandboxed plugins. Cheap to clone; share one
/// across tasks and threads.
///
/// Build one with [`Host::from_manifest`] or [`Host::builder`]. Every call
/// runs in a fresh instance of its plugin, bounded by the plugin's limits and
/// granted only what its policy says.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    sandbox: Sandbox,
    plugins: Vec<LoadedPlugin>,
    /// `plugin.tool` -> (plugin index, tool index).
    index: HashMap<String, (usize, usize)>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("tools", &self.inner.index.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Host`]. Denies everything by default:
///
/// - no plugins;
/// - a plugin added with [`PluginConfig::new`] gets no directories, no
///   environment variables, no network, no host stdio (stdin is empty,
///   stdout and stderr are captured and capped), and the default
///   [`Limits`](crate::Limits): 10^9 fuel, 64 MiB of memory, 5 s, 1 MiB of
///   output, 64 KiB of each stdio stream.
#[derive(Debug, Default)]
pub struct HostBuilder {
    plugins: Vec<PluginConfig>,
    base: Option<PathBuf>,
}

impl HostBuilder {
    /// Adds a plugin.
    pub fn plugin(mut self, plugin: PluginConfig) -> Self {
        self.plugins.push(plugin);
        self
    }

    /// Resolves relative paths of plugins against `dir` (default: the
    /// current directory).
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base = Some(dir.into());
        self
    }

    /// Validates every plugin, checks its pin, compiles it and loads its
    /// tool list.
    ///
    /// # Errors
    ///
    /// The first plugin that fails: [`Error::Manifest`] for invalid
    /// configuration, [`Error::PinMismatch`], [`Error::ForbiddenImports`],
    /// [`Error::InvalidComponent`] or [`Error::InvalidPlugin`].
    pub async fn build(self) -> Result<Host, Error> {
        let base = self.base.unwrap_or_else(|| PathBuf::from("."));
        let origin = Path::new("<builder>");
        let policies = self
            .plugins
            .into_iter()
            .map(|p| p.validate(&base, origin))
            .collect::<Result<Vec<_>, _>>()?;
        Host::load(policies, origin).await
    }
}

/// Per-call context from the agent runtime.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    caller: Option<String>,
    cancel: CancellationToken,
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

    /// Cancels the call when `token` is cancelled.
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The caller identity, if set.
    pub fn caller_id(&self) -> Option<&str> {
        self.caller.as_deref()
    }
}

/// The grants in force for a plugin's tools.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grants {
    /// Directory grants (host path, guest path, mode).
    pub dirs: Vec<DirGrant>,
    /// Names of the environment variables set (values are not shown).
    pub env: Vec<String>,
}

/// A tool as the host offers it: the plugin's declaration plus the facts
/// the host enforces.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolDescriptor {
    /// `plugin.tool`, the name to call it by.
    pub name: String,
    /// The plugin's name.
    pub plugin: String,
    /// The tool's name within the plugin.
    pub tool: String,
    /// The sha256 the plugin is pinned to.
    pub plugin_sha256: String,
    /// The sha256 of the plugin's whole tool list as declared (canonical
    /// JSON): compare it with the one you reviewed to catch a changed
    /// definition.
    pub tool_list_sha256: String,
    /// Short title, if declared (sanitised like the description).
    pub title: Option<String>,
    /// What the tool does: the plugin's text (untrusted), with control,
    /// ANSI and invisible formatting characters removed and cut to 2 KiB.
    pub description: String,
    /// JSON Schema of the arguments.
    pub input_schema: Value,
    /// JSON Schema of the output, if declared.
    pub output_schema: Option<Value>,
    /// The effect: the plugin's declaration, raised to what the grants allow
    /// (a read-write directory makes a tool at least `write`).
    pub effect: Effect,
    /// The grants in force.
    pub grants: Grants,
}

/// The result of a successful call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolOutput {
    /// `plugin.tool`.
    pub tool: String,
    /// The sha256 of the plugin that produced it.
    pub plugin_sha256: String,
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
}

impl Host {
    /// A builder that denies everything by default.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// Loads every plugin of the manifest at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::ManifestRead`] or [`Error::Manifest`] for the manifest, then
    /// the errors of [`HostBuilder::build`].
    pub async fn from_manifest(path: impl AsRef<Path>) -> Result<Host, Error> {
        let path = path.as_ref();
        let manifest = Manifest::load(path)?;
        let policies = policy::from_manifest(&manifest, path)?;
        Host::load(policies, path).await
    }

    async fn load(policies: Vec<PluginPolicy>, origin: &Path) -> Result<Host, Error> {
        let sandbox = Sandbox::new().map_err(Error::Internal)?;
        let mut plugins = Vec::with_capacity(policies.len());
        let mut index = HashMap::new();
        for policy in policies {
            if plugins
                .iter()
                .any(|p: &LoadedPlugin| p.policy.name == policy.name)
            {
                return Err(Error::manifest(
                    origin,
                    format!("plugin `{}` is configured twice", policy.name),
                ));
            }
            tracing::debug!(plugin = %policy.name, source = %policy.source.display(), "loading plugin");
            let plugin = LoadedPlugin::load(&sandbox, policy).await?;
            for (t, tool) in plugin.tools.iter().enumerate() {
                index.insert(
                    format!("{}.{}", plugin.policy.name, tool.name),
                    (plugins.len(), t),
                );
            }
            plugins.push(plugin);
        }
        Ok(Host {
            inner: Arc::new(Inner {
                sandbox,
                plugins,
                index,
            }),
        })
    }

    /// Every tool of every plugin, ordered by plugin then declaration.
    pub fn tools(&self) -> Vec<ToolDescriptor> {
        self.inner
            .plugins
            .iter()
            .flat_map(|p| (0..p.tools.len()).map(move |t| descriptor(p, t)))
            .collect()
    }

    /// The policies in force, one per plugin.
    pub fn policies(&self) -> impl Iterator<Item = &PluginPolicy> {
        self.inner.plugins.iter().map(|p| &p.policy)
    }

    fn resolve(&self, name: &str) -> Result<(usize, usize), Error> {
        if let Some(found) = self.inner.index.get(name) {
            return Ok(*found);
        }
        // An unqualified name is accepted when exactly one plugin has it.
        let mut matches = self
            .inner
            .index
            .iter()
            .filter(|(qualified, _)| qualified.split_once('.').is_some_and(|(_, t)| t == name));
        match (matches.next(), matches.next()) {
            (Some((_, found)), None) => Ok(*found),
            _ => {
                let mut available: Vec<String> = self.inner.index.keys().cloned().collect();
                available.sort();
                Err(Error::UnknownTool {
                    tool: name.to_string(),
                    available,
                })
            }
        }
    }

    /// Calls `tool` (`plugin.tool`, or just `tool` when only one plugin has
    /// it) with `arguments`, a JSON object as text.
    ///
    /// The arguments are parsed once (duplicate keys refused) and validated
    /// against the tool's input schema; the plugin then receives exactly
    /// these bytes, in a fresh instance.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTool`], [`Error::InvalidArguments`] (the plugin did
    /// not run), [`Error::Tool`] (the tool reported an error),
    /// [`Error::LimitExceeded`], [`Error::Crashed`], [`Error::Cancelled`],
    /// [`Error::InvalidOutput`].
    pub async fn call(
        &self,
        tool: &str,
        arguments: &str,
        ctx: &CallContext,
    ) -> Result<ToolOutput, Error> {
        let (p, t) = self.resolve(tool)?;
        let plugin = &self.inner.plugins[p];
        let def = &plugin.tools[t];
        let qualified = format!("{}.{}", plugin.policy.name, def.name);
        let invalid = |pointer: String, reason: String| Error::InvalidArguments {
            tool: qualified.clone(),
            pointer,
            reason,
        };
        let value = arguments::parse_object(arguments).map_err(|r| invalid(String::new(), r))?;
        def.validator
            .check(&value)
            .map_err(|(pointer, reason)| invalid(pointer, reason))?;

        let run = self
            .inner
            .sandbox
            .run(
                &plugin.pre,
                &plugin.policy,
                Request::Call {
                    tool: &def.name,
                    arguments,
                },
                &ctx.cancel,
            )
            .await;
        tracing::debug!(
            tool = %qualified,
            caller = ctx.caller.as_deref().unwrap_or("-"),
            fuel = run.fuel_used,
            duration = ?run.duration,
            stdout_bytes = run.stdout.total(),
            stdout_discarded = run.stdout.discarded,
            stderr_bytes = run.stderr.total(),
            stderr_discarded = run.stderr.discarded,
            logs_dropped = run.logs_dropped,
            ok = run.result.is_ok(),
            "call finished"
        );
        let tool = qualified;
        match run.result {
            Ok(Response::Output(text)) => {
                let value = serde_json::from_str(&text).map_err(|e| Error::InvalidOutput {
                    tool: tool.clone(),
                    reason: format!("not JSON: {e}"),
                })?;
                if let Some(schema) = &def.output_validator {
                    schema.check(&value).map_err(|(pointer, reason)| Error::InvalidOutput {
                        tool: tool.clone(),
                        reason: format!("does not match its output schema at `{pointer}`: {reason}"),
                    })?;
                }
                Ok(ToolOutput {
                    tool,
                    plugin_sha256: plugin.policy.sha256.clone(),
                    value,
                    stdout: run.stdout,
                    stderr: run.stderr,
                    logs: run.logs,
                    logs_dropped: run.logs_dropped,
                    fuel_used: run.fuel_used,
                    duration: run.duration,
                })
            }
            Ok(Response::ToolError(e)) => Err(Error::Tool {
                tool,
                error: match e {
                    WitToolError::InvalidInput(m) => ToolError::InvalidInput(m),
                    WitToolError::NotFound(m) => ToolError::NotFound(m),
                    WitToolError::Denied(m) => ToolError::Denied(m),
                    WitToolError::Internal(m) => ToolError::Internal(m),
                },
            }),
            Ok(Response::Tools(_)) => Err(Error::Internal(format!(
                "`{tool}`: the sandbox returned a tool list for a call"
            ))),
            Err(Failure::Limit(limit, detail)) => Err(Error::LimitExceeded {
                tool,
                limit,
                detail,
            }),
            Err(Failure::Crashed(reason)) => Err(Error::Crashed { tool, reason }),
            Err(Failure::Cancelled) => Err(Error::Cancelled { tool }),
            Err(Failure::Setup(reason)) => Err(Error::Internal(format!("`{tool}`: {reason}"))),
        }
    }
}

fn descriptor(plugin: &LoadedPlugin, t: usize) -> ToolDescriptor {
    let def = &plugin.tools[t];
    let policy = &plugin.policy;
    let writable = policy.dirs.iter().any(|d| d.mode == DirMode::ReadWrite);
    let floor = if writable {
        Effect::Write
    } else {
        Effect::Read
    };
    ToolDescriptor {
        name: format!("{}.{}", policy.name, def.name),
        plugin: policy.name.clone(),
        tool: def.name.clone(),
        plugin_sha256: policy.sha256.clone(),
        tool_list_sha256: plugin.tool_list_sha256.clone(),
        title: def.title.clone(),
        description: def.description.clone(),
        input_schema: def.input_schema.clone(),
        output_schema: def.output_schema.clone(),
        effect: def.effect.max(floor),
        grants: Grants {
            dirs: policy.dirs.clone(),
            env: policy.env.iter().map(|(k, _)| k.clone()).collect(),
        },
    }
}
