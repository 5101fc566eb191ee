//! Plugins configured in code ([`PluginConfig`]) or by a manifest
//! ([`from_manifest`]), validated in one pass into a [`PluginPolicy`]: the
//! first step of a grant's life cycle.

use super::approval::{ApprovalRule, ApprovalSetting};
use super::dirs::dirs;
use super::limits::{Limits, validate_limits};
use super::{DirMode, DirSpec, HttpRule, Invalid, PluginPolicy, resolve, valid_name};
use crate::error::Error;
use crate::manifest::{ApprovalEntry, HttpEntry, LimitsEntry, Manifest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A plugin configured in code, validated when the host is built.
///
/// ```
/// use portcullis::{DirMode, PluginConfig};
/// let files = PluginConfig::new("files", "plugins/dist/files.wasm")
///     .sha256("3db4739cba80cfcc5fff89d3d97fcee2cd0f3cb5dd211aad267659811cba1295")
///     .dir("plugins/files", "/data", DirMode::ReadOnly);
/// # let _ = files;
/// ```
#[derive(Debug, Clone)]
pub struct PluginConfig {
    name: String,
    source: PathBuf,
    sha256: Option<String>,
    tools_sha256: Option<String>,
    pinned_tools: Option<serde_json::Value>,
    dirs: Vec<DirSpec>,
    env: Vec<(String, String)>,
    http: Vec<HttpEntry>,
    limits: LimitsEntry,
    approvals: BTreeMap<String, ApprovalEntry>,
    secrets: Vec<String>,
    deny_imports: Vec<String>,
}

impl PluginConfig {
    /// A plugin with no grants and default limits. Relative paths are
    /// resolved against the current directory.
    pub fn new(name: impl Into<String>, source: impl Into<PathBuf>) -> Self {
        PluginConfig {
            name: name.into(),
            source: source.into(),
            sha256: None,
            tools_sha256: None,
            pinned_tools: None,
            dirs: Vec::new(),
            env: Vec::new(),
            http: Vec::new(),
            limits: LimitsEntry::default(),
            approvals: BTreeMap::new(),
            secrets: Vec::new(),
            deny_imports: Vec::new(),
        }
    }

    /// Links the interfaces `pattern` names (`"wasi:sockets/*"` or e.g.
    /// `"wasi:sockets/tcp"`) as deny-everything implementations, for a
    /// plugin whose language runtime imports them although its tools never
    /// use them (every operation returns the interface's access-denied
    /// error; the real implementation is never linked).
    pub fn deny_import(mut self, pattern: impl Into<String>) -> Self {
        self.deny_imports.push(pattern.into());
        self
    }

    /// Lets the plugin name the secret `name` (configured on the host with
    /// `[secrets.NAME]` or [`HostBuilder::secret`](crate::HostBuilder::secret)).
    pub fn secret(mut self, name: impl Into<String>) -> Self {
        self.secrets.push(name.into());
        self
    }

    /// Allows HTTP requests to one allowlist entry: a URL string such as
    /// `"https://api.example.com"` (GET and HEAD), or an
    /// [`HttpEntry::Table`] with methods and `allow_private`.
    ///
    /// ```
    /// use portcullis::PluginConfig;
    /// let fetch = PluginConfig::new("fetch", "plugins/dist/fetch.wasm")
    ///     .http("https://docs.rs");
    /// # let _ = fetch;
    /// ```
    pub fn http(mut self, entry: impl Into<HttpEntry>) -> Self {
        self.http.push(entry.into());
        self
    }

    /// Sets when calls of `tool` need approval (the tool must exist; see
    /// [`ApprovalSetting`] for the floor each effect imposes).
    ///
    /// ```
    /// use portcullis::PluginConfig;
    /// use portcullis::manifest::ApprovalEntry;
    /// let refunds = PluginConfig::new("refunds", "plugins/dist/refunds.wasm")
    ///     .approval("refund", ApprovalEntry::rules(["/amount > 100"]));
    /// # let _ = refunds;
    /// ```
    pub fn approval(mut self, tool: impl Into<String>, approval: ApprovalEntry) -> Self {
        self.approvals.insert(tool.into(), approval);
        self
    }

    /// Pins the component's sha256 (required).
    pub fn sha256(mut self, hex: impl Into<String>) -> Self {
        self.sha256 = Some(hex.into());
        self
    }

    /// Pins the sha256 of the plugin's tool list (see
    /// [`tool_list_hash`](crate::tool_list_hash)): a plugin declaring any
    /// other list is refused at load.
    pub fn tools_sha256(mut self, hex: impl Into<String>) -> Self {
        self.tools_sha256 = Some(hex.into());
        self
    }

    /// Grants the host directory `host` at guest path `guest`.
    pub fn dir(
        mut self,
        host: impl Into<PathBuf>,
        guest: impl Into<String>,
        mode: DirMode,
    ) -> Self {
        self.dirs.push((host.into(), guest.into(), mode, None));
        self
    }

    /// Grants a dangerous folder (`/`, the home folder, `/etc`, `/proc`,
    /// ...), which [`dir`](Self::dir) refuses, saying `why` (shown by
    /// `portcullis check` as a warning). The host's own state stays out
    /// of reach regardless.
    pub fn unsafe_dir(
        mut self,
        host: impl Into<PathBuf>,
        guest: impl Into<String>,
        mode: DirMode,
        why: impl Into<String>,
    ) -> Self {
        self.dirs
            .push((host.into(), guest.into(), mode, Some(why.into())));
        self
    }

    /// Sets an environment variable the plugin sees.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Replaces all limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = LimitsEntry {
            fuel: Some(limits.fuel),
            memory: Some(crate::manifest::ByteSize(limits.memory)),
            timeout: Some(crate::manifest::HumanDuration(limits.timeout)),
            output: Some(crate::manifest::ByteSize(limits.output)),
            stdio: Some(crate::manifest::ByteSize(limits.stdio)),
            http_requests: Some(limits.http_requests),
            http_response: Some(crate::manifest::ByteSize(limits.http_response)),
            http_request_body: Some(crate::manifest::ByteSize(limits.http_request_body)),
            http_timeout: Some(crate::manifest::HumanDuration(limits.http_timeout)),
            http_connect_timeout: Some(crate::manifest::HumanDuration(limits.http_connect_timeout)),
            disk_write: Some(crate::manifest::ByteSize(limits.disk_write)),
            disk_files: Some(limits.disk_files),
        };
        self
    }

    /// Validates against `base` (the folder relative paths are resolved
    /// against); `origin` labels errors (the manifest's path).
    pub(crate) fn validate(self, base: &Path, origin: &Path) -> Result<PluginPolicy, Error> {
        let name = self.name;
        let err = |message: String| Error::manifest(origin, message);
        if !valid_name(&name) {
            return Err(err(format!("plugin name `{name}` is invalid")).with_hint(
                "use 1-64 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter",
            ));
        }
        let sha256 = pin(&name, self.sha256).map_err(err_with(origin))?;
        let tools_sha256 = self
            .tools_sha256
            .map(|hex| {
                pin(&name, Some(hex)).map_err(|(m, _)| {
                    (
                        m.replace("`sha256`", "`tools_sha256`"),
                        Some("run `portcullis pin MANIFEST` to pin the plugin's current tool list"),
                    )
                })
            })
            .transpose()
            .map_err(err_with(origin))?;
        let dirs = dirs(&name, base, self.dirs).map_err(err_with(origin))?;
        let env = env(&name, self.env).map_err(err_with(origin))?;
        let limits =
            validate_limits(&self.limits).map_err(|m| err(format!("plugin `{name}`: {m}")))?;
        let http = http(&name, &self.http).map_err(err_with(origin))?;
        let approvals = approvals(&name, self.approvals).map_err(err_with(origin))?;
        let mut secrets: Vec<String> = Vec::new();
        for secret in self.secrets {
            if secrets.contains(&secret) {
                return Err(err(format!(
                    "plugin `{name}`: secret `{secret}` is listed twice"
                )));
            }
            secrets.push(secret);
        }
        for pattern in &self.deny_imports {
            if !pattern.starts_with("wasi:sockets/") {
                return Err(err(format!(
                    "plugin `{name}`: `deny_imports` entry `{pattern}` cannot be linked deny-everything"
                ))
                .with_hint("only `wasi:sockets` interfaces can: `\"wasi:sockets/*\"` or one, e.g. `\"wasi:sockets/tcp\"`"));
            }
        }

        Ok(PluginPolicy {
            name,
            source: resolve(base, &self.source),
            sha256,
            tools_sha256,
            pinned_tools: self.pinned_tools,
            dirs,
            env,
            http,
            limits,
            approvals,
            secrets,
            deny_imports: self.deny_imports,
        })
    }
}

/// Turns a step's [`Invalid`] into the manifest error naming `origin`.
fn err_with(origin: &Path) -> impl Fn(Invalid) -> Error + '_ {
    move |(message, hint)| {
        let e = Error::manifest(origin, message);
        match hint {
            Some(hint) => e.with_hint(hint),
            None => e,
        }
    }
}

/// The pin, as 64 lowercase hex digits.
fn pin(name: &str, sha256: Option<String>) -> Result<String, Invalid> {
    match sha256 {
        None => Err((
            format!("plugin `{name}`: `sha256` is missing"),
            Some("run `portcullis pin MANIFEST` to pin the plugin's current bytes"),
        )),
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(hex.to_ascii_lowercase())
        }
        Some(hex) => Err((
            format!("plugin `{name}`: `sha256` must be 64 hex digits, got `{hex}`"),
            Some("run `portcullis hash FILE` to print a component's sha256"),
        )),
    }
}

/// Environment variables: valid names and values, each set once, sorted.
fn env(name: &str, entries: Vec<(String, String)>) -> Result<Vec<(String, String)>, Invalid> {
    let mut env = BTreeMap::new();
    for (key, value) in entries {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            return Err((
                format!("plugin `{name}`: environment variable `{key}` is invalid"),
                None,
            ));
        }
        if env.insert(key.clone(), value).is_some() {
            return Err((
                format!("plugin `{name}`: environment variable `{key}` is set twice"),
                None,
            ));
        }
    }
    Ok(env.into_iter().collect())
}

/// The egress allowlist.
fn http(name: &str, entries: &[HttpEntry]) -> Result<Vec<HttpRule>, Invalid> {
    let mut http = Vec::with_capacity(entries.len());
    for entry in entries {
        let (methods, allow_private) = match entry {
            HttpEntry::Url(_) => (None, false),
            HttpEntry::Table(t) => (t.methods.as_deref(), t.allow_private),
        };
        let rule = HttpRule::parse(entry.url(), methods, allow_private).map_err(|why| {
            (
                format!(
                    "plugin `{name}`: `http` entry `{}` {why}",
                    entry.url().escape_debug()
                ),
                Some("entries are `scheme://host[:port][/path]` with an exact host or a `*.domain` wildcard, e.g. \"https://api.example.com\" or { url = \"https://*.example.org/v1/\", methods = [\"GET\", \"POST\"] }"),
            )
        })?;
        http.push(rule);
    }
    Ok(http)
}

/// Approval settings by tool, their rules parsed.
fn approvals(
    name: &str,
    entries: BTreeMap<String, ApprovalEntry>,
) -> Result<BTreeMap<String, ApprovalSetting>, Invalid> {
    let mut approvals = BTreeMap::new();
    for (tool, entry) in entries {
        let setting = match entry {
            ApprovalEntry::Never => ApprovalSetting::Never,
            ApprovalEntry::Always => ApprovalSetting::Always,
            ApprovalEntry::Rules(rules) if rules.is_empty() => {
                return Err((
                    format!("plugin `{name}`: `tools.{tool}.approval` has no rules"),
                    Some("use `approval = \"never\"` to never ask"),
                ));
            }
            ApprovalEntry::Rules(rules) => ApprovalSetting::Rules(
                rules
                    .iter()
                    .map(|r| ApprovalRule::parse(r))
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        (
                            format!("plugin `{name}`: `tools.{tool}.approval`: rule {e}"),
                            Some("a rule is `POINTER OP LITERAL`, e.g. `/amount > 100` or `/path matches \"/out/*\"`"),
                        )
                    })?,
            ),
        };
        approvals.insert(tool, setting);
    }
    Ok(approvals)
}

/// Validates every plugin of a parsed manifest. Relative paths are resolved
/// against the manifest's folder.
///
/// # Errors
///
/// [`Error::Manifest`] naming the plugin and field.
pub fn from_manifest(manifest: &Manifest, path: &Path) -> Result<Vec<PluginPolicy>, Error> {
    let base = crate::fs::folder_of(path);
    let pinned_tools = crate::manifest::read_tool_lock(path);
    manifest
        .plugins
        .iter()
        .map(|(name, entry)| {
            // A table that sets nothing is most likely a misspelt tool (or
            // setting): it would be ignored without a word.
            if let Some(tool) = entry.tools.iter().find(|(_, t)| t.approval.is_none()) {
                return Err(Error::manifest(
                    path,
                    format!(
                        "plugin `{name}`: `tools.{}` sets nothing",
                        tool.0
                    ),
                )
                .with_hint("a tool's table sets `approval = \"never\" | \"always\" | { rules = [...] }`; remove the table otherwise"));
            }
            PluginConfig {
                name: name.clone(),
                source: entry.source.clone(),
                sha256: entry.sha256.clone(),
                tools_sha256: entry.tools_sha256.clone(),
                pinned_tools: pinned_tools.get(name).cloned(),
                dirs: entry
                    .dirs
                    .iter()
                    .map(|d| (d.host.clone(), d.guest.clone(), d.mode, d.unsafe_allow.clone()))
                    .collect(),
                env: entry.env.clone().into_iter().collect(),
                http: entry.http.clone(),
                limits: entry.limits.clone(),
                approvals: entry
                    .tools
                    .iter()
                    .filter_map(|(tool, t)| Some((tool.clone(), t.approval.clone()?)))
                    .collect(),
                secrets: entry.secrets.clone(),
                deny_imports: entry.deny_imports.clone(),
            }
            .validate(base, path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "3db4739cba80cfcc5fff89d3d97fcee2cd0f3cb5dd211aad267659811cba1295";

    fn validate(config: PluginConfig) -> Result<PluginPolicy, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("docs")).expect("mkdir");
        config
            .validate(dir.path(), Path::new("m.toml"))
            .map_err(|e| format!("{e} / {}", e.hint().unwrap_or_default()))
    }

    #[test]
    fn defaults_deny_everything() {
        let p = validate(PluginConfig::new("files", "f.wasm").sha256(PIN)).expect("valid");
        assert!(p.dirs.is_empty());
        assert!(p.env.is_empty());
        assert_eq!(p.limits, Limits::default());
    }

    #[test]
    fn missing_pin_is_refused_with_hint() {
        let err = validate(PluginConfig::new("files", "f.wasm")).expect_err("must be refused");
        assert!(
            err.contains("`sha256` is missing") && err.contains("portcullis pin"),
            "{err}"
        );
    }

    #[test]
    fn malformed_pin_is_refused() {
        let err = validate(PluginConfig::new("files", "f.wasm").sha256("abc"))
            .expect_err("must be refused");
        assert!(err.contains("64 hex digits"), "{err}");
    }

    #[test]
    fn uppercase_pin_is_normalised() {
        let p =
            validate(PluginConfig::new("a", "f.wasm").sha256(PIN.to_uppercase())).expect("valid");
        assert_eq!(p.sha256, PIN);
    }

    #[test]
    fn invalid_plugin_names_are_refused() {
        for name in ["", "Files", "1files", "fi.les", "files!", &"a".repeat(65)] {
            assert!(
                validate(PluginConfig::new(name, "f.wasm").sha256(PIN)).is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn missing_directory_grant_is_refused() {
        let err = validate(PluginConfig::new("a", "f.wasm").sha256(PIN).dir(
            "nope",
            "/nope",
            DirMode::ReadOnly,
        ))
        .expect_err("must be refused");
        assert!(
            err.contains("`dirs` entry") && err.contains("existing directories"),
            "{err}"
        );
    }

    #[test]
    fn guest_paths_must_be_absolute_and_plain() {
        for guest in ["docs", "/docs/../etc", "/./docs", "/do\0cs"] {
            let err = validate(PluginConfig::new("a", "f.wasm").sha256(PIN).dir(
                "docs",
                guest,
                DirMode::ReadOnly,
            ));
            assert!(err.is_err(), "{guest:?} accepted");
        }
    }

    #[test]
    fn overlapping_guest_paths_are_refused() {
        let err = validate(
            PluginConfig::new("a", "f.wasm")
                .sha256(PIN)
                .dir("docs", "/data", DirMode::ReadOnly)
                .dir("docs", "/data/sub", DirMode::ReadWrite),
        )
        .expect_err("must be refused");
        assert!(err.contains("overlap"), "{err}");
    }

    #[test]
    fn directory_grants_are_read_only_unless_marked() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("docs")).expect("mkdir");
        let manifest = Manifest::parse(
            &format!("[plugins.a]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\ndirs = [{{ host = \"docs\", guest = \"/docs\" }}]\n"),
            Path::new("m.toml"),
        )
        .expect("parses");
        let policies = from_manifest(&manifest, &dir.path().join("m.toml")).expect("valid");
        assert_eq!(policies[0].dirs[0].mode, DirMode::ReadOnly);
        assert_eq!(policies[0].source, dir.path().join("a.wasm"));
    }

    #[test]
    fn a_tool_table_that_sets_nothing_is_refused() {
        let manifest = Manifest::parse(
            &format!(
                "[plugins.a]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\n\n[plugins.a.tools.sendd]\n"
            ),
            Path::new("m.toml"),
        )
        .expect("parses");
        let err = from_manifest(&manifest, Path::new("m.toml")).expect_err("refused");
        assert!(
            err.to_string().contains("`tools.sendd` sets nothing"),
            "{err}"
        );
    }

    #[test]
    fn limits_outside_their_ceiling_are_refused() {
        let huge = Limits {
            memory: 64 << 30,
            ..Limits::default()
        };
        let err = validate(PluginConfig::new("a", "f.wasm").sha256(PIN).limits(huge))
            .expect_err("must be refused");
        assert!(err.contains("`limits.memory` must be between"), "{err}");
        let zero = Limits {
            fuel: 0,
            ..Limits::default()
        };
        assert!(validate(PluginConfig::new("a", "f.wasm").sha256(PIN).limits(zero)).is_err());
    }

    #[test]
    fn approval_rules_are_parsed_at_validation() {
        let p = validate(
            PluginConfig::new("a", "f.wasm")
                .sha256(PIN)
                .approval("refund", ApprovalEntry::rules(["/amount > 100"])),
        )
        .expect("valid");
        let setting = &p.approvals["refund"];
        assert!(
            setting
                .requires(&serde_json::json!({"amount": 101}))
                .is_some()
        );
        assert!(
            setting
                .requires(&serde_json::json!({"amount": 99}))
                .is_none()
        );
        let err = validate(
            PluginConfig::new("a", "f.wasm")
                .sha256(PIN)
                .approval("refund", ApprovalEntry::rules(["amount > 100"])),
        )
        .expect_err("must be refused");
        assert!(err.contains("tools.refund.approval"), "{err}");
        let err = validate(
            PluginConfig::new("a", "f.wasm")
                .sha256(PIN)
                .approval("refund", ApprovalEntry::Rules(vec![])),
        )
        .expect_err("no rules is refused");
        assert!(err.contains("tools.refund.approval"), "{err}");
    }

    #[test]
    fn http_entries_are_validated_with_plugin_and_entry_named() {
        let p = validate(
            PluginConfig::new("a", "f.wasm")
                .sha256(PIN)
                .http("https://api.example.com"),
        )
        .expect("valid");
        assert_eq!(p.http.len(), 1);
        for bad in ["*", "https://*.com", "https://u@a.test", "ftp://a.test"] {
            let err =
                validate(PluginConfig::new("a", "f.wasm").sha256(PIN).http(bad)).expect_err(bad);
            assert!(err.contains("plugin `a`: `http` entry"), "{err}");
            assert!(err.contains("scheme://host"), "{err}");
        }
    }

    #[test]
    fn env_is_explicit_and_checked() {
        let p =
            validate(PluginConfig::new("a", "f.wasm").sha256(PIN).env("K", "v")).expect("valid");
        assert_eq!(p.env, vec![("K".to_string(), "v".to_string())]);
        assert!(validate(PluginConfig::new("a", "f.wasm").sha256(PIN).env("K=1", "v")).is_err());
    }
}
