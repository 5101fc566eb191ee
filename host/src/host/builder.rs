//! Building a [`Host`]: the builder, its defaults, and the checks that
//! need several parts of the configuration at once (secrets against the
//! plugins that name them, the audit sink, the trust roots, the core dump
//! directory).

use super::Host;
use crate::approval::{Approver, DenyAll};
use crate::audit::{AuditLog, AuditSink, FileSink};
use crate::egress::{Fixtures, Network, Resolver, SystemResolver, Tls};
use crate::error::Error;
use crate::manifest::Manifest;
use crate::plugin::CompileCache;
use crate::policy::{self, PluginConfig, PluginPolicy, reach};
use crate::sandbox::{CoreDumps, InstanceAllocation, MAX_SLOTS, PoolSettings};
use crate::secrets::{self, Scrubber, SecretConfig, SecretPolicy};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a call waits for its approver by default.
pub(crate) const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Denials one call may pile up before it is stopped (`audit.max_denials`).
const DEFAULT_MAX_DENIALS: u32 = 3;

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
/// - instances come from wasmtime's pooling allocator
///   ([`InstanceAllocation::Pooled`]) with 64 slots: at most 64 calls run at
///   once, a call waits at most 5 s for a slot and then fails with
///   [`Error::Busy`]. Each memory slot is as large as the largest
///   `limits.memory` of the plugins.
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
    fixtures: Option<Arc<Fixtures>>,
    /// Extra HTTPS roots, as PEM.
    roots: Vec<Vec<u8>>,
    core_dumps: Option<PathBuf>,
    approval_timeout: Option<Duration>,
    pool: PoolSettings,
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
            .field("fixtures", &self.fixtures.is_some())
            .field("roots", &self.roots.len())
            .field("core_dumps", &self.core_dumps)
            .field("pool", &self.pool)
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
    /// created private; one that is a symlink, belongs to another user or
    /// that other users can write is not used (a warning says so), since
    /// compiled code from it would run in the host. Entries are
    /// authenticated with a keyed BLAKE3 MAC under a key kept in `dir`
    /// (created 0600); a bad or planted entry is recompiled. No directory
    /// grant may contain `dir` or lie inside it.
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

    /// How long a call waits for its approver before it fails with
    /// [`Error::ApprovalTimedOut`] (default 5 minutes; audited like a
    /// refusal).
    pub fn approval_timeout(mut self, timeout: Duration) -> Self {
        self.approval_timeout = Some(timeout);
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

    /// For testing only (`portcullis test`): every HTTP request that passes
    /// the egress gate is answered from `fixtures` instead of the network,
    /// and host names resolve to the addresses the fixtures declare (a name
    /// none declares does not resolve). Every check of the gate, secret
    /// injection, limits, scrubbing and audit records run as in production;
    /// the requests are recorded as an upstream would receive them,
    /// secrets included, so never give fixtures to a production host.
    pub fn http_fixtures(mut self, fixtures: Arc<Fixtures>) -> Self {
        self.resolver = Some(Arc::new(Arc::clone(&fixtures)));
        self.fixtures = Some(fixtures);
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

    /// How many calls may run at once in this host (default 64, at most
    /// 10,000): the number of instance slots. A call beyond it waits for a
    /// slot (see [`HostBuilder::busy_wait`]).
    pub fn max_concurrent_calls(mut self, slots: u32) -> Self {
        self.pool.slots = slots;
        self
    }

    /// How long a call waits for a free slot before it fails with
    /// [`Error::Busy`] (default 5 s).
    pub fn busy_wait(mut self, wait: std::time::Duration) -> Self {
        self.pool.busy_wait = wait;
        self
    }

    /// How instances are allocated (default
    /// [`InstanceAllocation::Pooled`]). [`InstanceAllocation::OnDemand`]
    /// reserves no address space up front, at some cost per call; the
    /// concurrency cap applies either way.
    pub fn instance_allocation(mut self, allocation: InstanceAllocation) -> Self {
        self.pool.allocation = allocation;
        self
    }

    /// Whether operations on granted directories run on the thread that
    /// runs the call (default `true`: a stat or a small read costs a
    /// syscall, not a hop to a blocking thread and back). Set `false` when
    /// granted directories live on a network filesystem, where one
    /// operation may stall: they then run on tokio's blocking threads, and
    /// a stalled one cannot hold up a runtime worker.
    pub fn file_io_in_place(mut self, in_place: bool) -> Self {
        self.pool.file_io_in_place = in_place;
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
        let mut manifest_sha256 = None;
        if let Some(path) = &self.manifest {
            // Read once: what is parsed is what is hashed for the records.
            let read_error = |source| Error::ManifestRead {
                path: path.clone(),
                source,
            };
            let bytes = std::fs::read(path).map_err(read_error)?;
            manifest_sha256 = Some(crate::hash::sha256_hex(&bytes));
            let text = String::from_utf8(bytes)
                .map_err(|e| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
            let manifest = Manifest::parse(&text, path)?;
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
        let entry = audit_entry.unwrap_or_default();
        let audit_path = match (&self.audit, &entry.path) {
            (None, Some(file)) => Some(crate::fs::folder_of(&origin).join(file)),
            _ => None,
        };
        let state = reach::HostState {
            manifest: self.manifest.clone(),
            cache: self.cache_dir.clone(),
            audit: audit_path.clone(),
            core_dumps: self.core_dumps.clone(),
            secret_files: secret_policies
                .iter()
                .filter_map(|s| {
                    let from = s.source.describe();
                    let file = from.strip_prefix("file:")?;
                    Some((s.name.clone(), PathBuf::from(file)))
                })
                .collect(),
        };
        // The sink opens before the grants are judged, so that a plugin
        // refused for its grants is on the record too.
        let sink = match (self.audit, audit_path) {
            (Some(sink), _) => Some(sink),
            (None, Some(path)) => {
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
        if let Err((plugin, (message, hint))) = reach::check(&policies, &state) {
            let error = Error::manifest(&origin, message).with_hint(hint);
            let policy = policies.iter().find(|p| p.name == plugin);
            return Err(match (&sink, policy) {
                (Some(sink), Some(policy)) => {
                    // Before the secrets are loaded, so unscrubbed: the
                    // reason holds paths and names, never a secret value.
                    let audit = AuditLog::new(Some(Arc::clone(sink)))?;
                    refused(&audit, policy, manifest_sha256.as_ref(), error).await
                }
                _ => error,
            });
        }
        let scrubber = Arc::new(secrets::load(&secret_policies, &origin).await?);
        let audit = AuditLog::new(sink)?.scrubbing(Arc::clone(&scrubber));
        for policy in &policies {
            if let Err(e) = check_secrets(policy, &secret_policies, &scrubber, &origin) {
                return Err(refused(&audit, policy, manifest_sha256.as_ref(), e).await);
            }
        }
        check_destinations(&policies, &secret_policies, &origin)?;
        let cache = self.cache_dir.and_then(|dir| {
            CompileCache::open(&dir)
                .inspect_err(|e| tracing::warn!("compile cache disabled: {e}"))
                .ok()
        });
        let core_dumps = match self.core_dumps {
            Some(dir) => Some(CoreDumps::new(dir).map_err(|e| {
                Error::manifest(&origin, format!("core dump directory: {e}"))
                    .with_hint("use a directory only you can write, or a new one")
            })?),
            None => None,
        };
        if !(1..=MAX_SLOTS).contains(&self.pool.slots) {
            return Err(Error::manifest(
                &origin,
                format!(
                    "`max_concurrent_calls` must be between 1 and {MAX_SLOTS}, got `{}`",
                    self.pool.slots
                ),
            ));
        }
        // Each memory slot holds the largest memory any plugin may use.
        let pool = PoolSettings {
            memory: policies
                .iter()
                .map(|p| p.limits.memory)
                .max()
                .unwrap_or(self.pool.memory),
            ..self.pool
        };
        let settings = Settings {
            pool,
            core_dumps,
            cache,
            audit: Arc::new(audit),
            manifest_sha256,
            approval_timeout: self.approval_timeout.unwrap_or(DEFAULT_APPROVAL_TIMEOUT),
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
                fixtures: self.fixtures,
            },
        };
        Host::load(policies, &origin, settings).await
    }
}

/// What the builder decided beyond the plugins.
pub(crate) struct Settings {
    pub(super) pool: PoolSettings,
    pub(super) core_dumps: Option<CoreDumps>,
    pub(super) cache: Option<CompileCache>,
    pub(super) audit: Arc<AuditLog>,
    /// sha256 of the manifest's bytes, for the load records.
    pub(super) manifest_sha256: Option<String>,
    pub(super) approval_timeout: Duration,
    pub(super) approver: Arc<dyn Approver>,
    pub(super) max_denials: u32,
    pub(super) screen: bool,
    pub(super) secrets: Vec<SecretPolicy>,
    pub(super) scrubber: Arc<Scrubber>,
    pub(super) network: Network,
}

/// Records that `policy`'s plugin was refused at load with `error`, and
/// returns the error (or the audit error, if the record failed).
pub(super) async fn refused(
    audit: &AuditLog,
    policy: &PluginPolicy,
    manifest_sha256: Option<&String>,
    error: Error,
) -> Error {
    let record = crate::audit::AuditEvent::PluginRefused {
        plugin: policy.name.clone(),
        source: policy.source.clone(),
        pinned_sha256: Some(policy.sha256.clone()).filter(|s| !s.is_empty()),
        manifest_sha256: manifest_sha256.cloned(),
        reason: error.to_string(),
    };
    match audit.record(record).await {
        Ok(()) => error,
        Err(audit_error) => audit_error,
    }
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

/// Every destination of a secret is one that a plugin naming the secret
/// could send a request to: a destination outside every such allowlist
/// is a typo or a mistake, never a working binding.
fn check_destinations(
    policies: &[PluginPolicy],
    secrets: &[SecretPolicy],
    origin: &Path,
) -> Result<(), Error> {
    for secret in secrets {
        let users: Vec<&PluginPolicy> = policies
            .iter()
            .filter(|p| p.secrets.contains(&secret.name))
            .collect();
        if users.is_empty() {
            continue;
        }
        for destination in &secret.destinations {
            if !users.iter().any(|p| destination.reachable_by(&p.http)) {
                let names: Vec<&str> = users.iter().map(|p| p.name.as_str()).collect();
                return Err(Error::manifest(
                    origin,
                    format!(
                        "secret `{}`: destination `{destination}` is outside the `http` allowlist of {}: the secret could never be sent there",
                        secret.name,
                        names
                            .iter()
                            .map(|n| format!("plugin `{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .with_hint("fix the destination (a typo?), or add it to the plugin's `http` list"));
            }
        }
    }
    Ok(())
}
