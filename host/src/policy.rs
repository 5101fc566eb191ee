//! Validated policy: what each plugin may do, with every path resolved and
//! every limit filled in. No wasmtime types here; the sandbox turns a
//! [`PluginPolicy`] into a store and a WASI context.
//!
//! Two ways in: [`from_manifest`] for a parsed `portcullis.toml`, and
//! [`PluginConfig`] for embedders configuring plugins in code. Both end in
//! the same validation.

pub(crate) mod allowlist;
mod rules;

pub use rules::ApprovalRule;

pub use allowlist::HttpRule;

use crate::error::Error;
use crate::manifest::{ApprovalEntry, HttpEntry, LimitsEntry, Manifest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::manifest::DirMode;

/// Resource limits of one call. Every field has a safe default (see
/// [`Limits::default`]) and a hard ceiling the manifest cannot exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel units, about one per WebAssembly instruction. Default
    /// 1,000,000,000 (roughly a second of CPU); ceiling 10^12.
    pub fuel: u64,
    /// Total bytes of all the instance's linear memories. Default 64 MiB;
    /// range 1 MiB to 4 GiB.
    pub memory: u64,
    /// Wall-clock time of one call, including time blocked in host calls.
    /// Default 5 s; range 1 ms to 10 min.
    pub timeout: Duration,
    /// Bytes of tool output; a larger output is refused, never truncated.
    /// Default 1 MiB; ceiling 64 MiB.
    pub output: u64,
    /// Bytes kept of each of stdout and stderr; the excess is counted and
    /// discarded. Default 64 KiB; ceiling 16 MiB.
    pub stdio: u64,
    /// HTTP requests one call may make (allowed or not). Default 16; range
    /// 0 to 1,000.
    pub http_requests: u32,
    /// Bytes of one HTTP response body, enforced while it streams and again
    /// after decompression. Default 1 MiB; range 1 B to 64 MiB.
    pub http_response: u64,
    /// Bytes of one HTTP request body. Default 1 MiB; ceiling 16 MiB.
    pub http_request_body: u64,
    /// Time of one HTTP request, from name resolution to the last body
    /// byte; never past the call's own deadline. Default 10 s; range 1 ms
    /// to 10 min.
    pub http_timeout: Duration,
    /// Time to establish one TCP connection. Default 3 s; range 1 ms to
    /// 1 min.
    pub http_connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 1_000_000_000,
            memory: 64 << 20,
            timeout: Duration::from_secs(5),
            output: 1 << 20,
            stdio: 64 << 10,
            http_requests: 16,
            http_response: 1 << 20,
            http_request_body: 1 << 20,
            http_timeout: Duration::from_secs(10),
            http_connect_timeout: Duration::from_secs(3),
        }
    }
}

/// Fixed caps per call that are not configurable: they bound resources that
/// no tool legitimately needs many of.
pub mod caps {
    /// Linear memories per instance (a Rust component uses 2-3).
    pub const MEMORIES: usize = 32;
    /// Tables per instance.
    pub const TABLES: usize = 64;
    /// Elements per table.
    pub const TABLE_ELEMENTS: usize = 100_000;
    /// Core and component instances per store.
    pub const INSTANCES: usize = 64;
    /// Live resource handles (open files, directory streams, pollables).
    pub const RESOURCES: usize = 1_024;
    /// Log messages kept per call; more are counted and dropped.
    pub const LOG_MESSAGES: usize = 256;
    /// Bytes kept of one log message.
    pub const LOG_MESSAGE_BYTES: usize = 4_096;
    /// Headers one HTTP request may set.
    pub const HTTP_HEADERS: usize = 64;
    /// Total bytes of the names and values of one request's headers.
    pub const HTTP_HEADER_BYTES: usize = 16 * 1024;
    /// Requests of one call in flight at once through the `http`
    /// interface: its `send` blocks the guest until the response is
    /// complete, so there is never more than one.
    pub const HTTP_IN_FLIGHT: usize = 1;
}

/// A directory the plugin may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The host directory, canonical (symlinks resolved at load).
    pub host: PathBuf,
    /// The absolute path the plugin sees, e.g. `/docs`.
    pub guest: String,
    /// Read-only or read-write.
    pub mode: DirMode,
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
}

/// When calls of a tool need a person's approval.
///
/// The floor follows the tool's effect as the host sees it (raised by
/// read-write grants): `destructive` always asks and cannot be configured
/// lower; `write` asks unless configured (`never` or rules); `read` never
/// asks unless configured.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApprovalSetting {
    /// No approval needed.
    Never,
    /// Every call needs approval.
    Always,
    /// A call needs approval when any rule holds for its arguments.
    Rules(Vec<ApprovalRule>),
}

impl ApprovalSetting {
    /// Why a call with `arguments` needs approval, or `None` if it does not.
    pub fn requires(&self, arguments: &serde_json::Value) -> Option<String> {
        match self {
            ApprovalSetting::Never => None,
            ApprovalSetting::Always => Some("the tool always needs approval".into()),
            ApprovalSetting::Rules(rules) => rules
                .iter()
                .find(|r| r.holds(arguments))
                .map(|r| format!("rule `{r}` holds (or its field is missing or mistyped)")),
        }
    }

    /// `never`, `always`, or the rules joined with ` or `.
    pub fn describe(&self) -> String {
        match self {
            ApprovalSetting::Never => "never".into(),
            ApprovalSetting::Always => "always".into(),
            ApprovalSetting::Rules(rules) => {
                let rules: Vec<String> = rules.iter().map(|r| format!("`{r}`")).collect();
                format!("when {}", rules.join(" or "))
            }
        }
    }
}

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
    dirs: Vec<(PathBuf, String, DirMode)>,
    env: Vec<(String, String)>,
    http: Vec<HttpEntry>,
    limits: LimitsEntry,
    approvals: BTreeMap<String, ApprovalEntry>,
    secrets: Vec<String>,
}

impl PluginConfig {
    /// A plugin with no grants and default limits. Relative paths are
    /// resolved against the current directory.
    pub fn new(name: impl Into<String>, source: impl Into<PathBuf>) -> Self {
        PluginConfig {
            name: name.into(),
            source: source.into(),
            sha256: None,
            dirs: Vec::new(),
            env: Vec::new(),
            http: Vec::new(),
            limits: LimitsEntry::default(),
            approvals: BTreeMap::new(),
            secrets: Vec::new(),
        }
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

    /// Grants the host directory `host` at guest path `guest`.
    pub fn dir(
        mut self,
        host: impl Into<PathBuf>,
        guest: impl Into<String>,
        mode: DirMode,
    ) -> Self {
        self.dirs.push((host.into(), guest.into(), mode));
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
        let sha256 = match self.sha256 {
            None => {
                return Err(err(format!("plugin `{name}`: `sha256` is missing"))
                    .with_hint("run `portcullis pin MANIFEST` to pin the plugin's current bytes"));
            }
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                hex.to_ascii_lowercase()
            }
            Some(hex) => {
                return Err(err(format!(
                    "plugin `{name}`: `sha256` must be 64 hex digits, got `{hex}`"
                ))
                .with_hint("run `portcullis hash FILE` to print a component's sha256"));
            }
        };

        let mut dirs: Vec<DirGrant> = Vec::new();
        for (host, guest, mode) in self.dirs {
            let joined = resolve(base, &host);
            let canonical = std::fs::canonicalize(&joined).map_err(|e| {
                err(format!(
                    "plugin `{name}`: `dirs` entry `{}`: {e}",
                    joined.display()
                ))
                .with_hint("directory grants must name existing directories")
            })?;
            if !canonical.is_dir() {
                return Err(err(format!(
                    "plugin `{name}`: `dirs` entry `{}` is not a directory",
                    joined.display()
                )));
            }
            check_guest_path(&guest).map_err(|why| {
                err(format!(
                    "plugin `{name}`: `dirs` guest path `{guest}` {why}"
                ))
                .with_hint("guest paths are absolute and plain, e.g. `/docs`")
            })?;
            let guest = normalise_guest(&guest);
            if let Some(other) = dirs.iter().find(|d| overlaps(&d.guest, &guest)) {
                return Err(err(format!(
                    "plugin `{name}`: guest paths `{}` and `{guest}` overlap",
                    other.guest
                ))
                .with_hint("give each directory grant its own guest path"));
            }
            dirs.push(DirGrant {
                host: canonical,
                guest,
                mode,
            });
        }

        let mut env = BTreeMap::new();
        for (key, value) in self.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(err(format!(
                    "plugin `{name}`: environment variable `{key}` is invalid"
                )));
            }
            if env.insert(key.clone(), value).is_some() {
                return Err(err(format!(
                    "plugin `{name}`: environment variable `{key}` is set twice"
                )));
            }
        }

        let limits =
            validate_limits(&self.limits).map_err(|m| err(format!("plugin `{name}`: {m}")))?;

        let mut http = Vec::with_capacity(self.http.len());
        for entry in &self.http {
            let (methods, allow_private) = match entry {
                HttpEntry::Url(_) => (None, false),
                HttpEntry::Table(t) => (t.methods.as_deref(), t.allow_private),
            };
            let rule = HttpRule::parse(entry.url(), methods, allow_private).map_err(|why| {
                err(format!(
                    "plugin `{name}`: `http` entry `{}` {why}",
                    entry.url().escape_debug()
                ))
                .with_hint("entries are `scheme://host[:port][/path]` with an exact host or a `*.domain` wildcard, e.g. \"https://api.example.com\" or { url = \"https://*.example.org/v1/\", methods = [\"GET\", \"POST\"] }")
            })?;
            http.push(rule);
        }

        let mut approvals = BTreeMap::new();
        for (tool, entry) in self.approvals {
            let setting = match entry {
                ApprovalEntry::Never => ApprovalSetting::Never,
                ApprovalEntry::Always => ApprovalSetting::Always,
                ApprovalEntry::Rules(rules) if rules.is_empty() => {
                    return Err(err(format!(
                        "plugin `{name}`: `tools.{tool}.approval` has no rules"
                    ))
                    .with_hint("use `approval = \"never\"` to never ask"));
                }
                ApprovalEntry::Rules(rules) => ApprovalSetting::Rules(
                    rules
                        .iter()
                        .map(|r| ApprovalRule::parse(r))
                        .collect::<Result<_, _>>()
                        .map_err(|e| {
                            err(format!("plugin `{name}`: `tools.{tool}.approval`: rule {e}"))
                                .with_hint("a rule is `POINTER OP LITERAL`, e.g. `/amount > 100` or `/path matches \"/out/*\"`")
                        })?,
                ),
            };
            approvals.insert(tool, setting);
        }

        let mut secrets: Vec<String> = Vec::new();
        for secret in self.secrets {
            if secrets.contains(&secret) {
                return Err(err(format!(
                    "plugin `{name}`: secret `{secret}` is listed twice"
                )));
            }
            secrets.push(secret);
        }

        Ok(PluginPolicy {
            name,
            source: resolve(base, &self.source),
            sha256,
            dirs,
            env: env.into_iter().collect(),
            http,
            limits,
            approvals,
            secrets,
        })
    }
}

/// Validates every plugin of a parsed manifest. Relative paths are resolved
/// against the manifest's folder.
///
/// # Errors
///
/// [`Error::Manifest`] naming the plugin and field.
pub fn from_manifest(manifest: &Manifest, path: &Path) -> Result<Vec<PluginPolicy>, Error> {
    let base = crate::util::folder_of(path);
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
                dirs: entry
                    .dirs
                    .iter()
                    .map(|d| (d.host.clone(), d.guest.clone(), d.mode))
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
            }
            .validate(base, path)
        })
        .collect()
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

fn check_guest_path(guest: &str) -> Result<(), &'static str> {
    if !guest.starts_with('/') {
        return Err("must be absolute");
    }
    if guest.contains('\0') || guest.contains('\\') {
        return Err("contains a forbidden character");
    }
    // Checked on the text: `Path::components` would quietly drop `.`.
    let inner = guest.trim_start_matches('/').trim_end_matches('/');
    if !inner.is_empty()
        && inner
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err("must not contain `.`, `..` or empty segments");
    }
    Ok(())
}

fn normalise_guest(guest: &str) -> String {
    let trimmed = guest.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

fn overlaps(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        outer == "/" || inner == outer || inner.starts_with(&format!("{outer}/"))
    };
    inside(a, b) || inside(b, a)
}

/// `Ok` if `value` lies in `range`, else the message: ``limits.NAME` must
/// be between BOUNDS, got `VALUE``.
fn within<T: PartialOrd + Copy>(
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    bounds: &str,
    show: impl Fn(T) -> String,
) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "`limits.{name}` must be between {bounds}, got `{}`",
            show(value)
        ))
    }
}

fn validate_limits(entry: &LimitsEntry) -> Result<Limits, String> {
    let d = Limits::default();
    let limits = Limits {
        fuel: entry.fuel.unwrap_or(d.fuel),
        memory: entry.memory.map_or(d.memory, |b| b.0),
        timeout: entry.timeout.map_or(d.timeout, |t| t.0),
        output: entry.output.map_or(d.output, |b| b.0),
        stdio: entry.stdio.map_or(d.stdio, |b| b.0),
        http_requests: entry.http_requests.unwrap_or(d.http_requests),
        http_response: entry.http_response.map_or(d.http_response, |b| b.0),
        http_request_body: entry.http_request_body.map_or(d.http_request_body, |b| b.0),
        http_timeout: entry.http_timeout.map_or(d.http_timeout, |t| t.0),
        http_connect_timeout: entry
            .http_connect_timeout
            .map_or(d.http_connect_timeout, |t| t.0),
    };
    let bytes = |n: u64| format!("{n} bytes");
    let time = |t: Duration| format!("{t:?}");
    let ms = Duration::from_millis(1);
    within(
        "fuel",
        limits.fuel,
        1..=1_000_000_000_000,
        "1 and 10^12",
        |n: u64| n.to_string(),
    )?;
    within(
        "memory",
        limits.memory,
        (1 << 20)..=(4 << 30),
        "1 MiB and 4 GiB",
        bytes,
    )?;
    within(
        "timeout",
        limits.timeout,
        ms..=Duration::from_secs(600),
        "1ms and 10m",
        time,
    )?;
    within(
        "output",
        limits.output,
        1..=(64 << 20),
        "1 byte and 64 MiB",
        bytes,
    )?;
    within("stdio", limits.stdio, 0..=(16 << 20), "0 and 16 MiB", bytes)?;
    within(
        "http_requests",
        limits.http_requests,
        0..=1_000,
        "0 and 1000",
        |n: u32| n.to_string(),
    )?;
    within(
        "http_response",
        limits.http_response,
        1..=(64 << 20),
        "1 byte and 64 MiB",
        bytes,
    )?;
    within(
        "http_request_body",
        limits.http_request_body,
        0..=(16 << 20),
        "0 and 16 MiB",
        bytes,
    )?;
    within(
        "http_timeout",
        limits.http_timeout,
        ms..=Duration::from_secs(600),
        "1ms and 10m",
        time,
    )?;
    within(
        "http_connect_timeout",
        limits.http_connect_timeout,
        ms..=Duration::from_secs(60),
        "1ms and 1m",
        time,
    )?;
    Ok(limits)
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
