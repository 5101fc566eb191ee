//! Validated policy: what each plugin may do, with every path resolved and
//! every limit filled in. No wasmtime types here; the sandbox turns a
//! [`PluginPolicy`] into a store and a WASI context.
//!
//! Two ways in: [`from_manifest`] for a parsed `portcullis.toml`, and
//! [`PluginConfig`] for embedders configuring plugins in code. Both end in
//! the same validation.
//!
//! # A grant's life cycle
//!
//! Every grant (a directory, an environment variable, an HTTP destination,
//! a secret) goes through the same steps, each with one home:
//!
//! 1. **validated** once, here: `PluginConfig::validate` (in `config`) turns
//!    the raw entries into a [`PluginPolicy`]; secrets are checked against
//!    the plugins that name them when the host is built (`host::builder`);
//! 2. **prepared once per plugin** at load (`egress::PluginEgress`: the
//!    rules, secrets and limits of one plugin, worked out once by `host`);
//! 3. **prepared per call** (`egress::CallEgress`, made by `host` and
//!    handed to the sandbox ready to use; the WASI context of `sandbox`);
//! 4. **linked** by the sandbox (`sandbox::linker`'s `INTERFACES` table);
//! 5. **described** by one projection, [`PluginPolicy::grants`], used by
//!    tool descriptors, approval requests and the audit log's load record.
//!
//! Files: `limits` (limits and fixed caps), `config` (validation),
//! `dirs` (one plugin's directory grants), `approval` (effects, approval
//! settings and rules), `allowlist` (the
//! egress allowlist's grammar), `reach` (what grants may reach, checked
//! across all plugins: the host's own state, dangerous folders, aliasing).

pub(crate) mod allowlist;
mod approval;
mod config;
mod dirs;
mod limits;
pub(crate) mod reach;
mod spelling;

pub use allowlist::HttpRule;
pub(crate) use approval::approval_settings;
pub use approval::{ApprovalRule, ApprovalSetting, Effect};
pub use config::{PluginConfig, from_manifest};
pub use limits::{Limits, caps};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::manifest::DirMode;

/// A directory grant as configured: host, guest, mode, `unsafe_allow`
/// (the input of the `dirs` validation step of `config`).
type DirSpec = (PathBuf, String, DirMode, Option<String>);

/// What a validation step found wrong: the message and, when the user can
/// act, a hint. The caller adds the manifest's path.
type Invalid = (String, Option<&'static str>);

/// A directory the plugin may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The host directory, canonical (symlinks resolved at load).
    pub host: PathBuf,
    /// The absolute path the plugin sees, e.g. `/docs`.
    pub guest: String,
    /// Read-only or read-write.
    pub mode: DirMode,
    /// Why a dangerous folder (`/`, the home folder, `/etc`, `/proc`, ...)
    /// is granted anyway: without it such a grant is refused.
    pub unsafe_allow: Option<String>,
}

/// Everything a plugin may do, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginPolicy {
    /// The plugin's name: tools are addressed as `name.tool`.
    pub name: String,
    /// Path of the component file.
    pub source: PathBuf,
    /// The pinned sha256, 64 lowercase hex digits.
    pub sha256: String,
    /// The pinned sha256 of the tool list, if pinned.
    pub tools_sha256: Option<String>,
    /// The pinned tool list as recorded beside the manifest, for the diff
    /// shown when the tool list changed (trusted only if it hashes to
    /// `tools_sha256`).
    pub pinned_tools: Option<serde_json::Value>,
    /// Directory grants. No grant, no files.
    pub dirs: Vec<DirGrant>,
    /// Environment variables the plugin sees. Nothing of the host's.
    pub env: Vec<(String, String)>,
    /// HTTP destinations (the egress allowlist). No entry, no network.
    pub http: Vec<HttpRule>,
    /// Limits of every call.
    pub limits: Limits,
    /// Approval settings by tool name, as configured. Tools not listed
    /// follow their effect (see [`ApprovalSetting`]).
    pub approvals: BTreeMap<String, ApprovalSetting>,
    /// Names of the secrets the plugin may have attached to its requests
    /// (each must be configured on the host). The plugin never holds their
    /// values.
    pub secrets: Vec<String>,
    /// Interfaces linked as deny-everything implementations for this
    /// plugin (every operation returns the interface's access-denied
    /// error), as the manifest names them: `wasi:sockets/*` or
    /// `wasi:sockets/INTERFACE`.
    pub deny_imports: Vec<String>,
}

/// `path` relative to `base`, without a `./` prefix when `base` is the
/// current directory (so messages show the path as the user wrote it).
pub(crate) fn resolve(base: &Path, path: &Path) -> PathBuf {
    if base == Path::new(".") {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Plugin and tool names: 1-64 of `[a-z0-9_-]`, starting with a letter.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The grants in force for a plugin's tools: what descriptors, approval
/// requests and the audit log's load record show.
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

impl PluginPolicy {
    /// The grants in force, as shown to agents, approvers and the audit
    /// log: the one projection of a policy's grants.
    pub fn grants(&self) -> Grants {
        Grants {
            dirs: self.dirs.clone(),
            env: self.env.iter().map(|(k, _)| k.clone()).collect(),
            secrets: self.secrets.clone(),
            http: self.http.iter().map(ToString::to_string).collect(),
        }
    }
}
