//! The public facade: build a [`Host`] once, list its tools, call them.

use crate::approval::{ApprovalRequest, Approver, DenyAll, Gate};
use crate::arguments;
use crate::audit::{
    AuditEvent, AuditHead, AuditLog, AuditSink, DenialCounter, DirRecord, FileSink,
    MAX_RECORDED_ARGUMENTS,
};
use crate::cache::CompileCache;
use crate::egress::{Network, PluginGrants, Resolver, SystemResolver, Tls};
use crate::error::{Error, ToolError};
use crate::manifest::Manifest;
use crate::plugin::{Effect, LoadedPlugin, sha256_hex};
use crate::policy::{self, ApprovalSetting, DirGrant, DirMode, PluginConfig, PluginPolicy};
use crate::provenance::{self, InjectionFlag, Provenance, Trust};
use crate::sandbox::{
    CallGrants, Captured, Failure, LogRecord, Request, Response, Sandbox, WitToolError,
};
use crate::secrets::{self, Scrubber, SecretConfig, SecretPolicy};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Denials one call may pile up before it is stopped (`audit.max_denials`).
const DEFAULT_MAX_DENIALS: u32 = 3;

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
    /// When each tool needs approval, by plugin then tool index.
    approvals: Vec<Vec<ApprovalSetting>>,
    audit: AuditLog,
    approver: Arc<dyn Approver>,
    gate: Gate,
    calls: AtomicU64,
    max_denials: u32,
    screen: bool,
    secrets: Vec<SecretPolicy>,
    /// What each plugin may reach and attach, by plugin index (worked out once,
    /// not per call).
    grants: Vec<PluginGrants>,
    /// Every secret value, for scrubbing everything a call returns.
    scrubber: Arc<Scrubber>,
    network: Network,
    /// Where core dumps of trapped calls go, if anywhere.
    core_dumps: Option<CoreDumps>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.audit.flush();
    }
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
///   output, 64 KiB of each stdio stream;
/// - approvals follow each tool's effect (`destructive` and `write` ask,
///   `read` does not) and the approver is [`DenyAll`](crate::DenyAll): a
///   call that needs approval is denied;
/// - no audit sink (nothing is recorded), at most 3 denials per call, no
///   output screen;
/// - no secrets (nothing to scrub).
/// - names in HTTP requests are resolved by [`SystemResolver`].
#[derive(Default)]
pub struct HostBuilder {
    plugins: Vec<PluginConfig>,
    base: Option<PathBuf>,
    manifest: Option<PathBuf>,
    audit: Option<Arc<dyn AuditSink>>,
    approver: Option<Arc<dyn Approver>>,
    max_denials: Option<u32>,
    screen: Option<bool>,
    cache_dir: Option<PathBuf>,
    secrets: Vec<SecretConfig>,
    resolver: Option<Arc<dyn Resolver>>,
    /// Extra HTTPS roots, as PEM.
    roots: Vec<Vec<u8>>,
    core_dumps: Option<PathBuf>,
}

impl std::fmt::Debug for HostBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuilder")
            .field("plugins", &self.plugins)
            .field("base", &self.base)
            .field("manifest", &self.manifest)
            .field("cache_dir", &self.cache_dir)
            .field("audit", &self.audit.is_some())
            .field("approver", &self.approver.is_some())
            .field("max_denials", &self.max_denials)
            .field("screen", &self.screen)
            .field("secrets", &self.secrets)
            .field("resolver", &self.resolver.is_some())
            .field("roots", &self.roots.len())
            .field("core_dumps", &self.core_dumps)
            .finish()
    }
}

impl HostBuilder {
    /// Loads the plugins, `[secrets]` and `[audit]` settings of the manifest
    /// at `path` when the host is built (as [`Host::from_manifest`] does);
    /// settings made on the builder take precedence.
    pub fn manifest(mut self, path: impl Into<PathBuf>) -> Self {
        self.manifest = Some(path.into());
        self
    }

    /// Keeps compiled plugins in `dir`, keyed by the sha256 of their pinned
    /// bytes and the engine's settings, so that later hosts load them
    /// instead of compiling again (default: no cache). The directory is
    /// created private; one that other users can write is not used (a
    /// warning says so), since compiled code from it would run in the
    /// host. Entries are checksummed; a bad entry is recompiled.
    pub fn compile_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Sends audit records to `sink` (instead of the manifest's
    /// `[audit] path`, if any).
    pub fn audit(mut self, sink: impl AuditSink) -> Self {
        self.audit = Some(Arc::new(sink));
        self
    }

    /// Asks `approver` before calls that need approval (default:
    /// [`DenyAll`](crate::DenyAll)).
    pub fn approver(mut self, approver: impl Approver) -> Self {
        self.approver = Some(Arc::new(approver));
        self
    }

    /// How many denials one call may pile up before it is stopped as
    /// suspicious (default 3, or the manifest's `audit.max_denials`).
    pub fn max_denials(mut self, max: u32) -> Self {
        self.max_denials = Some(max);
        self
    }

    /// Screens every output for known prompt-injection patterns (default
    /// off, or the manifest's `audit.screen`). See
    /// [`INJECTION_PATTERNS`](crate::INJECTION_PATTERNS).
    pub fn screen_output(mut self, screen: bool) -> Self {
        self.screen = Some(screen);
        self
    }

    /// Adds a secret (besides the manifest's `[secrets]`). Its source is
    /// asked for the value when the host is built; plugins name it with
    /// [`PluginConfig::secret`].
    pub fn secret(mut self, secret: SecretConfig) -> Self {
        self.secrets.push(secret);
        self
    }

    /// Resolves the host names of HTTP requests with `resolver` (default:
    /// [`SystemResolver`]). Every address it returns is still checked
    /// against the blocked ranges.
    pub fn resolver(mut self, resolver: impl Resolver) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// When a plugin traps, writes a standard WebAssembly core dump of its
    /// instance to `dir` as `PLUGIN-MILLIS-PID-CALLID.coredump`, at most 16
    /// per host, and names the file (not `dir`) in the error (default: no
    /// dumps). For tool authors debugging a crash: a dump holds whatever
    /// the plugin had in memory, such as data it read from granted
    /// directories (never a secret value: the host does not give those to
    /// plugins). `dir` is created private; an existing one that other users
    /// can write is refused when the host is built.
    pub fn core_dumps(mut self, dir: impl Into<PathBuf>) -> Self {
        self.core_dumps = Some(dir.into());
        self
    }

    /// Also trusts the CA certificates in `pem` (one or more PEM
    /// `CERTIFICATE` blocks) for HTTPS requests, besides the Mozilla roots:
    /// for services behind a private CA. Host names are verified as
    /// always.
    pub fn trust_root_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots.push(pem.into());
        self
    }

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
    /// [`Error::ManifestRead`] for an unreadable manifest, then the first
    /// plugin that fails: [`Error::Manifest`] for invalid configuration
    /// (including an audit log that cannot be opened, a secret whose source
    /// fails or whose value is empty or under 8 bytes, a plugin naming an
    /// unknown secret, and an `env` value containing a secret's value),
    /// [`Error::PluginRead`], [`Error::PinMismatch`],
    /// [`Error::ForbiddenImports`], [`Error::InvalidComponent`] or
    /// [`Error::InvalidPlugin`]; [`Error::Audit`] if a load record cannot be
    /// written; [`Error::Internal`] if the engine cannot be set up.
    pub async fn build(self) -> Result<Host, Error> {
        let base = self.base.unwrap_or_else(|| PathBuf::from("."));
        let mut origin = PathBuf::from("<builder>");
        let mut policies = Vec::new();
        let mut audit_entry = None;
        let mut secret_policies = Vec::new();
        if let Some(path) = &self.manifest {
            let manifest = Manifest::load(path)?;
            policies = policy::from_manifest(&manifest, path)?;
            secret_policies = secrets::from_manifest(&manifest, path)?;
            audit_entry = manifest.audit;
            origin.clone_from(path);
        }
        for plugin in self.plugins {
            policies.push(plugin.validate(&base, &origin)?);
        }
        for secret in self.secrets {
            let secret = secret.validate(&origin)?;
            if secret_policies
                .iter()
                .any(|s: &SecretPolicy| s.name == secret.name)
            {
                return Err(Error::manifest(
                    &origin,
                    format!("secret `{}` is configured twice", secret.name),
                ));
            }
            secret_policies.push(secret);
        }
        let scrubber = Arc::new(secrets::load(&secret_policies, &origin).await?);
        for policy in &policies {
            check_secrets(policy, &secret_policies, &scrubber, &origin)?;
        }
        let entry = audit_entry.unwrap_or_default();
        let sink = match (self.audit, &entry.path) {
            (Some(sink), _) => Some(sink),
            (None, Some(file)) => {
                let path = crate::util::folder_of(&origin).join(file);
                let sink = FileSink::open(&path).map_err(|e| {
                    Error::manifest(
                        &origin,
                        format!("`audit.path`: failed to open `{}`: {e}", path.display()),
                    )
                })?;
                Some(Arc::new(sink.fsync(entry.fsync)) as Arc<dyn AuditSink>)
            }
            (None, None) => None,
        };
        let cache = self.cache_dir.and_then(|dir| {
            CompileCache::open(&dir)
                .inspect_err(|e| tracing::warn!("compile cache disabled: {e}"))
                .ok()
        });
        let core_dumps = match self.core_dumps {
            Some(dir) => {
                crate::util::private_dir(&dir).map_err(|e| {
                    Error::manifest(&origin, format!("core dump directory: {e}"))
                        .with_hint("use a directory only you can write, or a new one")
                })?;
                Some(CoreDumps {
                    dir,
                    written: AtomicU64::new(0),
                })
            }
            None => None,
        };
        let settings = Settings {
            core_dumps,
            cache,
            audit: AuditLog::new(sink).scrubbing(Arc::clone(&scrubber)),
            approver: self.approver.unwrap_or_else(|| Arc::new(DenyAll)),
            max_denials: self
                .max_denials
                .or(entry.max_denials)
                .unwrap_or(DEFAULT_MAX_DENIALS),
            screen: self.screen.unwrap_or(entry.screen),
            secrets: secret_policies,
            scrubber,
            network: Network {
                resolver: self.resolver.unwrap_or_else(|| Arc::new(SystemResolver)),
                tls: tls(&self.roots, &origin)?,
            },
        };
        Host::load(policies, &origin, settings).await
    }
}

/// Where core dumps go, and how many this host wrote.
struct CoreDumps {
    dir: PathBuf,
    written: AtomicU64,
}

/// Core dumps one host writes at most: a plugin that traps on every call
/// must not fill the disk.
const MAX_CORE_DUMPS: u64 = 16;

impl CoreDumps {
    /// Writes `bytes` as a new dump of `plugin`'s call; returns the text to
    /// add to the call's error. The agent sees only the file's name; the
    /// operator's log has the whole path.
    async fn write(&self, plugin: &str, call_id: u64, bytes: Vec<u8>) -> String {
        if self.written.fetch_add(1, Ordering::Relaxed) >= MAX_CORE_DUMPS {
            return format!(" (no core dump: this host already wrote {MAX_CORE_DUMPS})");
        }
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        // Unique across hosts and runs sharing the directory.
        let name = format!(
            "{plugin}-{millis}-{}-{call_id}.coredump",
            std::process::id()
        );
        let path = self.dir.join(&name);
        let target = path.clone();
        let written =
            tokio::task::spawn_blocking(move || crate::util::write_atomically(&target, &bytes))
                .await;
        match written {
            Ok(Ok(())) => {
                tracing::warn!(plugin, call_id, path = %path.display(), "core dump written");
                format!(" (core dump: {name})")
            }
            Ok(Err(e)) => {
                tracing::warn!(plugin, call_id, "core dump not written: {e}");
                " (the core dump could not be written)".into()
            }
            Err(e) => {
                tracing::warn!(plugin, call_id, "core dump not written: {e}");
                " (the core dump could not be written)".into()
            }
        }
    }
}

/// What the builder decided beyond the plugins.
struct Settings {
    core_dumps: Option<CoreDumps>,
    cache: Option<CompileCache>,
    audit: AuditLog,
    approver: Arc<dyn Approver>,
    max_denials: u32,
    screen: bool,
    secrets: Vec<SecretPolicy>,
    scrubber: Arc<Scrubber>,
    network: Network,
}

/// The HTTPS trust: the Mozilla roots and the certificates of `pems`.
fn tls(pems: &[Vec<u8>], origin: &Path) -> Result<Tls, Error> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    let mut ders = Vec::new();
    for pem in pems {
        let before = ders.len();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| {
                Error::manifest(origin, format!("a trusted root is not valid PEM: {e}"))
            })?;
            ders.push(cert.to_vec());
        }
        if ders.len() == before {
            return Err(Error::manifest(
                origin,
                "a trusted root holds no PEM `CERTIFICATE` block",
            ));
        }
    }
    Tls::new(&ders).map_err(|e| Error::manifest(origin, format!("trusted roots: {e}")))
}

/// Each secret the plugin names exists, and no `env` value hands the guest
/// a secret's value (in any form the scrubber knows).
fn check_secrets(
    policy: &PluginPolicy,
    secrets: &[SecretPolicy],
    scrubber: &Scrubber,
    origin: &Path,
) -> Result<(), Error> {
    for name in &policy.secrets {
        if !secrets.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::manifest(
                origin,
                format!(
                    "plugin `{}`: secret `{name}` is not configured",
                    policy.name
                ),
            )
            .with_hint(if known.is_empty() {
                format!("declare it in a `[secrets.{name}]` table")
            } else {
                format!("configured secrets: {}", known.join(", "))
            }));
        }
    }
    for (key, value) in &policy.env {
        if let Some(secret) = scrubber.find(value.as_bytes()) {
            return Err(Error::manifest(
                origin,
                format!(
                    "plugin `{}`: environment variable `{key}` contains the value of secret `{secret}`",
                    policy.name
                ),
            )
            .with_hint(format!(
                "the plugin can read its environment; remove the value from `env` and list the secret in `secrets = [\"{secret}\"]` so the host attaches it for the plugin"
            )));
        }
    }
    Ok(())
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
    /// Names of the secrets the host may attach to the plugin's requests
    /// (the plugin never holds their values).
    pub secrets: Vec<String>,
    /// HTTP destinations, as normalised allowlist entries (methods shown
    /// when not just `GET` and `HEAD`).
    pub http: Vec<String>,
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
    /// When a call needs approval: the manifest's setting, or the floor of
    /// the effect (`destructive` and `write` always, `read` never).
    pub approval: ApprovalSetting,
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
        Host::builder().manifest(path.as_ref()).build().await
    }

    async fn load(
        policies: Vec<PluginPolicy>,
        origin: &Path,
        settings: Settings,
    ) -> Result<Host, Error> {
        let sandbox = Sandbox::scrubbing(
            Arc::clone(&settings.scrubber),
            settings.core_dumps.is_some(),
        )
        .map_err(Error::Internal)?;
        let mut plugins = Vec::with_capacity(policies.len());
        let mut approvals = Vec::with_capacity(policies.len());
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
            let plugin = LoadedPlugin::load(&sandbox, settings.cache.as_ref(), policy).await?;
            approvals.push(approval_settings(&plugin, origin)?);
            settings.audit.record(load_record(&plugin))?;
            for (t, tool) in plugin.tools.iter().enumerate() {
                index.insert(
                    format!("{}.{}", plugin.policy.name, tool.name),
                    (plugins.len(), t),
                );
            }
            plugins.push(plugin);
        }
        let grants = plugins
            .iter()
            .map(|p| PluginGrants {
                http: p.policy.http.iter().cloned().collect(),
                secrets: settings
                    .secrets
                    .iter()
                    .filter(|s| p.policy.secrets.contains(&s.name))
                    .cloned()
                    .collect(),
            })
            .collect();
        Ok(Host {
            inner: Arc::new(Inner {
                grants,
                sandbox,
                plugins,
                index,
                approvals,
                audit: settings.audit,
                approver: settings.approver,
                gate: Gate::new(),
                calls: AtomicU64::new(0),
                max_denials: settings.max_denials,
                screen: settings.screen,
                secrets: settings.secrets,
                scrubber: settings.scrubber,
                network: settings.network,
                core_dumps: settings.core_dumps,
            }),
        })
    }

    /// The head of this host's audit chain (its writer id, last sequence
    /// number and that record's sha256), if it recorded anything. Store it
    /// where the log's writer cannot rewrite it; `portcullis audit verify
    /// --head` then detects records cut from the end.
    pub fn audit_head(&self) -> Option<AuditHead> {
        self.inner.audit.head()
    }

    /// Every tool of every plugin, ordered by plugin then declaration.
    pub fn tools(&self) -> Vec<ToolDescriptor> {
        self.inner
            .plugins
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                (0..p.tools.len()).map(move |t| descriptor(p, t, &self.inner.approvals[i][t]))
            })
            .collect()
    }

    /// The secrets configured on this host (names, sources, destinations,
    /// injection rules; never values).
    pub fn secrets(&self) -> &[SecretPolicy] {
        &self.inner.secrets
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
    /// against the tool's input schema. If the tool's approval setting says
    /// so, the host then asks its [`Approver`] and runs the plugin only on
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
        let value = arguments::parse_object(arguments).map_err(|r| invalid(String::new(), r))?;
        def.validator
            .check(&value)
            .map_err(|(pointer, reason)| invalid(pointer, reason))?;

        let call_id = self.inner.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let arguments_sha256 = sha256_hex(arguments::canonical(&value).as_bytes());
        // Scrubbed before the cut, which could leave a secret's prefix.
        let scrubbed = self.inner.scrubber.scrub_str(arguments);
        let (recorded, truncated) = crate::util::cut(&scrubbed, MAX_RECORDED_ARGUMENTS);
        self.inner.audit.record(AuditEvent::CallStarted {
            call_id,
            caller: ctx.caller.clone(),
            tool: qualified.clone(),
            plugin_sha256: plugin.policy.sha256.clone(),
            arguments: recorded.to_string(),
            arguments_bytes: arguments.len(),
            arguments_truncated: truncated,
            arguments_sha256: arguments_sha256.clone(),
        })?;

        let mut stats = RunStats::default();
        let call = Call {
            p,
            t,
            call_id,
            tool: &qualified,
            arguments,
            value: &value,
            arguments_sha256,
            ctx,
        };
        let result = self.attempt(&call, &mut stats).await;
        let (outcome, limit) = match &result {
            Ok(_) => ("ok", None),
            Err(Error::Tool { .. }) => ("tool_error", None),
            Err(Error::LimitExceeded { limit, .. }) => ("limit", Some(limit.as_str())),
            Err(Error::Crashed { .. }) => ("crashed", None),
            Err(Error::Cancelled { .. }) => ("cancelled", None),
            Err(Error::InvalidOutput { .. }) => ("invalid_output", None),
            Err(Error::ApprovalDenied { .. }) => ("approval_denied", None),
            Err(Error::Suspicious { .. }) => ("suspicious", None),
            Err(Error::Audit(_)) => ("audit_failed", None),
            Err(_) => ("internal", None),
        };
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
        self.inner.audit.record(AuditEvent::CallEnded {
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
        })?;
        result
    }

    /// Asks for approval if needed, then runs the call.
    async fn attempt(&self, call: &Call<'_>, stats: &mut RunStats) -> Result<ToolOutput, Error> {
        let inner = &*self.inner;
        let plugin = &inner.plugins[call.p];
        let def = &plugin.tools[call.t];
        let tool = call.tool.to_string();
        let mut denials = DenialCounter::new(inner.max_denials);

        if let Some(reason) = inner.approvals[call.p][call.t].requires(call.value) {
            let request = ApprovalRequest {
                call_id: call.call_id,
                caller: call.ctx.caller.clone(),
                plugin: plugin.policy.name.clone(),
                plugin_sha256: plugin.policy.sha256.clone(),
                tool: tool.clone(),
                description: def.description.clone(),
                arguments: inner.scrubber.scrub_str(call.arguments).into_owned(),
                arguments_sha256: call.arguments_sha256.clone(),
                effect: effective_effect(plugin, call.t),
                dirs: plugin.policy.dirs.clone(),
                env: plugin.policy.env.iter().map(|(k, _)| k.clone()).collect(),
                http: plugin.policy.http.iter().map(ToString::to_string).collect(),
                secrets: plugin.policy.secrets.clone(),
                reason: reason.clone(),
                binding: inner.gate.issue(),
            };
            inner.audit.record(AuditEvent::ApprovalRequested {
                call_id: call.call_id,
                tool: tool.clone(),
                plugin_sha256: request.plugin_sha256.clone(),
                arguments_sha256: request.arguments_sha256.clone(),
                effect: request.effect.as_str(),
                reason,
            })?;
            let decision = tokio::select! {
                decision = inner.approver.approve(&request) => decision,
                () = call.ctx.cancel.cancelled() => return Err(Error::Cancelled { tool }),
            };
            let checked = inner.gate.check(&request, decision);
            inner.audit.record(AuditEvent::ApprovalDecided {
                call_id: call.call_id,
                tool: tool.clone(),
                approved: checked.is_ok(),
                by: checked.as_ref().ok().cloned().flatten(),
                reason: checked.as_ref().err().cloned(),
            })?;
            if let Err(reason) = checked {
                if denials.deny(&inner.audit, call.call_id, &tool, "approval", &reason)? {
                    return Err(Error::Suspicious {
                        tool,
                        denials: denials.count(),
                    });
                }
                return Err(Error::ApprovalDenied { tool, reason });
            }
        }

        let mut run = inner
            .sandbox
            .run(
                &plugin.pre,
                &plugin.policy,
                Request::Call {
                    tool: &def.name,
                    arguments: call.arguments,
                    network: &inner.network,
                    max_denials: inner.max_denials.saturating_sub(denials.count()),
                    grants: CallGrants {
                        grants: &inner.grants[call.p],
                        call_id: call.call_id,
                        caller: call.ctx.caller.as_deref(),
                    },
                },
                &call.ctx.cancel,
            )
            .await;
        stats.fuel_used = run.fuel_used;
        stats.stdout_bytes = run.stdout.total();
        stats.stderr_bytes = run.stderr.total();
        stats.log_messages = run.logs.len() as u64 + run.logs_dropped;
        let mut suspicious = false;
        for record in &run.egress {
            inner.audit.record(AuditEvent::Egress {
                call_id: call.call_id,
                tool: tool.clone(),
                method: record.method.clone(),
                destination: record.destination.clone(),
                allowed: record.allowed,
                status: record.status,
                bytes: record.bytes,
                reason: record.reason.clone(),
                secret: record.secret.clone(),
            })?;
            if record.denied
                && let Some(reason) = &record.reason
                && !suspicious
            {
                suspicious = denials.deny(&inner.audit, call.call_id, &tool, "egress", reason)?;
            }
        }
        if suspicious || matches!(run.result, Err(Failure::Suspicious(_))) {
            return Err(Error::Suspicious {
                tool,
                denials: denials.count(),
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
        let scrubber = run
            .scrubber
            .clone()
            .unwrap_or_else(|| Arc::clone(&inner.scrubber));
        let finish = || match run.result {
            Ok(Response::Output(text)) => {
                stats.output_bytes = Some(text.len());
                let mut value: Value =
                    serde_json::from_str(&text).map_err(|e| Error::InvalidOutput {
                        tool: tool.clone(),
                        reason: format!("not JSON: {e}"),
                    })?;
                if let Some(schema) = &def.output_validator {
                    schema
                        .check(&value)
                        .map_err(|(pointer, reason)| Error::InvalidOutput {
                            tool: tool.clone(),
                            reason: format!(
                                "does not match its output schema at `{pointer}`: {reason}"
                            ),
                        })?;
                }
                // After validation (the schema sees what the plugin
                // returned), before the screen (whose pointers show keys).
                scrubber.scrub_json(&mut value);
                let flags = if inner.screen {
                    provenance::screen(&value)
                } else {
                    Vec::new()
                };
                if !flags.is_empty() {
                    let flags: Vec<String> = flags.iter().map(ToString::to_string).collect();
                    tracing::warn!(tool = %tool, call_id = call.call_id, ?flags, "output matches prompt-injection patterns");
                    inner.audit.record(AuditEvent::OutputFlagged {
                        call_id: call.call_id,
                        tool: tool.clone(),
                        flags,
                    })?;
                }
                Ok(ToolOutput {
                    provenance: Provenance {
                        plugin: plugin.policy.name.clone(),
                        plugin_sha256: plugin.policy.sha256.clone(),
                        tool: tool.clone(),
                        call_id: call.call_id,
                        write_access: writable(&plugin.policy),
                        trust: Trust::Untrusted,
                    },
                    tool,
                    plugin_sha256: plugin.policy.sha256.clone(),
                    call_id: call.call_id,
                    flags,
                    value,
                    stdout: run.stdout,
                    stderr: run.stderr,
                    logs: run.logs,
                    logs_dropped: run.logs_dropped,
                    fuel_used: run.fuel_used,
                    duration: run.duration,
                    scrubber: Arc::clone(&scrubber),
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
                detail: detail + &dumped,
            }),
            Err(Failure::Crashed(reason)) => Err(Error::Crashed {
                tool,
                reason: reason + &dumped,
            }),
            Err(Failure::Cancelled) => Err(Error::Cancelled { tool }),
            Err(Failure::Suspicious(denials)) => Err(Error::Suspicious { tool, denials }),
            Err(Failure::Setup(reason)) => Err(Error::Internal(format!("`{tool}`: {reason}"))),
        };
        finish().map_err(|e| e.scrubbed(&scrubber))
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
}

fn writable(policy: &PluginPolicy) -> bool {
    policy.dirs.iter().any(|d| d.mode == DirMode::ReadWrite)
}

/// The tool's declared effect, raised to what its grants allow: a
/// read-write directory or egress with methods beyond `GET` and `HEAD`
/// makes it at least `write`.
fn effective_effect(plugin: &LoadedPlugin, t: usize) -> Effect {
    let floor = if writable(&plugin.policy) || plugin.policy.http.iter().any(|r| r.allows_writes())
    {
        Effect::Write
    } else {
        Effect::Read
    };
    plugin.tools[t].effect.max(floor)
}

/// When each tool of `plugin` needs approval: the configured setting, never
/// below the floor of its effect. Every configured tool must exist.
fn approval_settings(plugin: &LoadedPlugin, origin: &Path) -> Result<Vec<ApprovalSetting>, Error> {
    let policy = &plugin.policy;
    if let Some(unknown) = policy
        .approvals
        .keys()
        .find(|name| !plugin.tools.iter().any(|t| &t.name == *name))
    {
        let names: Vec<&str> = plugin.tools.iter().map(|t| t.name.as_str()).collect();
        return Err(Error::manifest(
            origin,
            format!(
                "plugin `{}`: `tools.{unknown}` configures a tool the plugin does not offer",
                policy.name
            ),
        )
        .with_hint(format!("its tools are: {}", names.join(", "))));
    }
    (0..plugin.tools.len())
        .map(|t| {
            let name = &plugin.tools[t].name;
            let configured = policy.approvals.get(name);
            Ok(match (effective_effect(plugin, t), configured) {
                (Effect::Destructive, None | Some(ApprovalSetting::Always)) => {
                    ApprovalSetting::Always
                }
                (Effect::Destructive, Some(_)) => {
                    return Err(Error::manifest(
                        origin,
                        format!(
                            "plugin `{}`: tool `{name}` is destructive, so every call needs approval; `tools.{name}.approval` cannot lower that",
                            policy.name
                        ),
                    )
                    .with_hint(format!("remove `tools.{name}.approval` or set it to \"always\"")));
                }
                (_, Some(setting)) => setting.clone(),
                (Effect::Write, None) => ApprovalSetting::Always,
                (_, None) => ApprovalSetting::Never,
            })
        })
        .collect()
}

fn load_record(plugin: &LoadedPlugin) -> AuditEvent {
    let policy = &plugin.policy;
    AuditEvent::PluginLoaded {
        plugin: policy.name.clone(),
        sha256: policy.sha256.clone(),
        tool_list_sha256: plugin.tool_list_sha256.clone(),
        tools: plugin.tools.iter().map(|t| t.name.clone()).collect(),
        dirs: policy
            .dirs
            .iter()
            .map(|d| DirRecord {
                host: d.host.clone(),
                guest: d.guest.clone(),
                mode: d.mode.as_str(),
            })
            .collect(),
        env: policy.env.iter().map(|(k, _)| k.clone()).collect(),
        http: policy.http.iter().map(ToString::to_string).collect(),
        secrets: policy.secrets.clone(),
    }
}

fn descriptor(plugin: &LoadedPlugin, t: usize, approval: &ApprovalSetting) -> ToolDescriptor {
    let def = &plugin.tools[t];
    let policy = &plugin.policy;
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
        effect: effective_effect(plugin, t),
        grants: Grants {
            dirs: policy.dirs.clone(),
            env: policy.env.iter().map(|(k, _)| k.clone()).collect(),
            secrets: policy.secrets.clone(),
            http: policy.http.iter().map(ToString::to_string).collect(),
        },
        approval: approval.clone(),
    }
}
