//! Building a [`Host`]: the builder, its defaults, and the checks that
//! need several parts of the configuration at once (secrets against the
//! plugins that name them, the audit sink, the trust roots, the core dump
//! directory).

use super::Host;
use crate::approval::{Approver, DenyAll};
use crate::audit::{AuditLog, AuditSink, FileSink};
use crate::egress::{Network, Resolver, SystemResolver, Tls};
use crate::error::Error;
use crate::manifest::Manifest;
use crate::plugin::CompileCache;
use crate::policy::{self, PluginConfig, PluginPolicy};
use crate::sandbox::{CoreDumps, InstanceAllocation, MAX_SLOTS, PoolSettings};
use crate::secrets::{self, Scrubber, SecretConfig, SecretPolicy};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Extra HTTPS roots, as PEM.
    roots: Vec<Vec<u8>>,
    core_dumps: Option<PathBuf>,
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
                let path = crate::fs::folder_of(&origin).join(file);
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

/// What the builder decided beyond the plugins.
pub(crate) struct Settings {
    pub(super) pool: PoolSettings,
    pub(super) core_dumps: Option<CoreDumps>,
    pub(super) cache: Option<CompileCache>,
    pub(super) audit: AuditLog,
    pub(super) approver: Arc<dyn Approver>,
    pub(super) max_denials: u32,
    pub(super) screen: bool,
    pub(super) secrets: Vec<SecretPolicy>,
    pub(super) scrubber: Arc<Scrubber>,
    pub(super) network: Network,
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
