//! The public facade: build a [`Host`] once (`builder`), list its tools,
//! call them (`call`).
//!
//! Loading follows the steps below the facade: the manifest's raw shapes
//! (`manifest`) are validated into policies (`policy`) and secrets
//! (`secrets`), checked against each other once (`builder`), then each
//! plugin is read, pinned and compiled (`plugin`). A call goes host ->
//! arguments -> approval -> sandbox -> egress -> secrets, with audit as the
//! sink beside both paths (`call`).

mod builder;
mod call;

pub use builder::HostBuilder;
pub use call::{CallContext, ToolOutput};

use crate::approval::{Approver, Gate};
use crate::audit::{AuditEvent, AuditHead, AuditLog, DirRecord};
use crate::descriptor::ToolDescriptor;
use crate::egress::PluginEgress;
use crate::error::Error;
use crate::plugin::LoadedPlugin;
use crate::policy::{ApprovalSetting, PluginPolicy};
use crate::sandbox::{CoreDumps, Sandbox};
use crate::secrets::{Scrubber, SecretPolicy};
use builder::Settings;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

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
    audit: Arc<AuditLog>,
    approver: Arc<dyn Approver>,
    /// How long a call waits for its approver.
    approval_timeout: std::time::Duration,
    gate: Gate,
    calls: AtomicU64,
    max_denials: u32,
    screen: bool,
    secrets: Vec<SecretPolicy>,
    /// Each plugin's egress, by plugin index (worked out once, not per
    /// call); `None` without HTTP grants.
    egress: Vec<Option<PluginEgress>>,
    /// Every secret value, for scrubbing everything a call returns.
    scrubber: Arc<Scrubber>,
    /// Where core dumps of trapped calls go, if anywhere.
    core_dumps: Option<CoreDumps>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("tools", &self.inner.index.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
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

    pub(super) async fn load(
        policies: Vec<PluginPolicy>,
        origin: &Path,
        settings: Settings,
    ) -> Result<Host, Error> {
        let sandbox = Sandbox::scrubbing(
            Arc::clone(&settings.scrubber),
            settings.core_dumps.is_some(),
            &settings.pool,
        )
        .map_err(Error::Internal)?;
        let mut plugins = Vec::with_capacity(policies.len());
        let mut approvals = Vec::with_capacity(policies.len());
        let mut index = HashMap::new();
        let loaded = LoadedPlugin::load_all(&sandbox, settings.cache.as_ref(), &policies).await;
        for (policy, loaded) in policies.into_iter().zip(loaded) {
            if plugins
                .iter()
                .any(|p: &LoadedPlugin| p.policy.name == policy.name)
            {
                return Err(Error::manifest(
                    origin,
                    format!("plugin `{}` is configured twice", policy.name),
                ));
            }
            let plugin = match loaded {
                Ok(plugin) => plugin,
                Err(e) => {
                    let sha = settings.manifest_sha256.as_ref();
                    return Err(builder::refused(&settings.audit, &policy, sha, e).await);
                }
            };
            approvals.push(plugin.approval_settings(origin)?);
            settings
                .audit
                .record(load_record(&plugin, settings.manifest_sha256.clone()))
                .await?;
            for (t, tool) in plugin.tools.iter().enumerate() {
                index.insert(
                    format!("{}.{}", plugin.policy.name, tool.name),
                    (plugins.len(), t),
                );
            }
            plugins.push(plugin);
        }
        // A plugin's egress, prepared once (none without HTTP grants: its
        // calls get no gate, and every request is denied).
        let egress = plugins
            .iter()
            .map(|p| {
                (!p.policy.http.is_empty()).then(|| PluginEgress {
                    plugin: Arc::from(p.policy.name.as_str()),
                    http: p.policy.http.iter().cloned().collect(),
                    secrets: settings
                        .secrets
                        .iter()
                        .filter(|s| p.policy.secrets.contains(&s.name))
                        .cloned()
                        .collect(),
                    limits: p.policy.limits,
                    network: settings.network.clone(),
                    scrubber: Arc::clone(&settings.scrubber),
                })
            })
            .collect();
        Ok(Host {
            inner: Arc::new(Inner {
                egress,
                sandbox,
                plugins,
                index,
                approvals,
                audit: settings.audit,
                approver: settings.approver,
                approval_timeout: settings.approval_timeout,
                gate: Gate::new(),
                calls: AtomicU64::new(0),
                max_denials: settings.max_denials,
                screen: settings.screen,
                secrets: settings.secrets,
                scrubber: settings.scrubber,
                core_dumps: settings.core_dumps,
            }),
        })
    }

    /// The head of the audit chain this host last wrote to (the chain id,
    /// the sequence number of this host's last record and that record's
    /// sha256), if it recorded anything. Store it where the log's writer
    /// cannot rewrite it; `portcullis audit verify --head` then detects
    /// records cut from the end, or the chain removed.
    pub fn audit_head(&self) -> Option<AuditHead> {
        self.inner.audit.head()
    }

    /// Records `event` (for the MCP server's refusals of requests that
    /// never became calls).
    pub(crate) async fn record(&self, event: AuditEvent) -> Result<(), Error> {
        self.inner.audit.record(event).await
    }

    /// Every tool of every plugin, ordered by plugin then declaration.
    pub fn tools(&self) -> Vec<ToolDescriptor> {
        self.inner
            .plugins
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                (0..p.tools.len())
                    .map(move |t| ToolDescriptor::new(p, t, &self.inner.approvals[i][t]))
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

    pub(super) fn resolve(&self, name: &str) -> Result<(usize, usize), Error> {
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
}

/// The record of a plugin's load: its pins, the manifest's hash, its tools
/// and every grant.
fn load_record(plugin: &LoadedPlugin, manifest_sha256: Option<String>) -> AuditEvent {
    let policy = &plugin.policy;
    let grants = policy.grants();
    AuditEvent::PluginLoaded {
        plugin: policy.name.clone(),
        sha256: policy.sha256.clone(),
        manifest_sha256,
        tool_list_sha256: plugin.tool_list_sha256.clone(),
        tools: plugin.tools.iter().map(|t| t.name.clone()).collect(),
        dirs: grants
            .dirs
            .iter()
            .map(|d| DirRecord {
                host: d.host.clone(),
                guest: d.guest.clone(),
                mode: d.mode.as_str(),
            })
            .collect(),
        env: grants.env,
        http: grants.http,
        secrets: grants.secrets,
    }
}
