//! The manifest (`portcullis.toml`) as written: the raw serde shape, with
//! unknown fields refused. [`crate::policy`] validates it.
//!
//! ```toml
//! [plugins.files]
//! source = "dist/files.wasm"          # relative to the manifest's folder
//! sha256 = "3db4739c…"                # `portcullis pin` writes it
//! tools_sha256 = "9f86d081…"          # the tool list's pin, also by `pin`
//! dirs = [
//!   { host = "../docs", guest = "/docs" },                     # read-only
//!   { host = "out", guest = "/out", mode = "read-write" },
//! ]
//! env = { GREETING = "hello" }        # explicit, never secret
//! http = [                            # egress allowlist (GET and HEAD unless `methods`)
//!   "https://api.example.com",
//!   { url = "https://*.example.org:8443/v1/", methods = ["GET", "POST"] },
//!   { url = "http://127.0.0.1:8080", allow_private = true },   # local services only
//! ]
//! secrets = ["github"]                # secrets it may name (see below)
//!
//! [plugins.files.limits]
//! fuel = 1_000_000_000
//! memory = "64 MiB"
//! timeout = "5s"
//! output = "1 MiB"
//! stdio = "64 KiB"
//! http_requests = 16                  # requests per call
//! http_response = "1 MiB"             # response body, after decompression
//! http_request_body = "1 MiB"
//! http_timeout = "10s"                # per request, never past the call's deadline
//! http_connect_timeout = "3s"
//! disk_write = "64 MiB"               # bytes written per call through read-write grants
//! disk_files = 1_000                  # files, directories and links created per call
//!
//! [plugins.files.tools.read_file]     # per tool; the tool must exist
//! approval = "always"                 # or "never", or { rules = ["/amount > 100"] }
//!
//! [secrets.github]                    # a secret the plugin uses, never holds
//! source = "env:GITHUB_TOKEN"         # or "file:PATH", relative to the manifest
//! destinations = ["https://api.github.com/repos"]   # or { url, methods, allow_private }
//! inject = { header = "Authorization", format = "Bearer {}" }
//!
//! [audit]                             # optional: the hash-chained audit log
//! path = "audit.jsonl"                # relative to the manifest's folder
//! fsync = false                       # fsync after every record
//! max_denials = 3                     # denials one call may pile up
//! screen = false                      # flag prompt-injection patterns in outputs
//! ```

mod pin;
mod units;

pub use pin::{Pin, Repin, RepinError, read_tool_lock, tool_lock_path, write_tool_lock};

pub use units::{ByteSize, HumanDuration, parse_duration, parse_size};

use crate::error::Error;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A whole manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Plugins by name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginEntry>,
    /// The audit log, if any.
    pub audit: Option<AuditEntry>,
    /// Secrets by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretEntry>,
}

/// One `[secrets.NAME]` table: a value the host attaches to requests for
/// plugins that list it, and scrubs from everything they return.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretEntry {
    /// `env:VARIABLE` or `file:PATH` (relative to the manifest's folder).
    pub source: String,
    /// The destinations the secret is bound to (at least one).
    #[serde(default)]
    pub destinations: Vec<DestinationEntry>,
    /// How the secret is attached to a request.
    pub inject: InjectEntry,
}

/// A destination, shaped like an egress allowlist entry:
/// `"https://api.example.com/v1"` or `{ url = "...", methods = ["GET"],
/// allow_private = true }`. See [`crate::Destination`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawDestination")]
pub enum DestinationEntry {
    /// Just a URL: any method.
    Url(String),
    /// A URL with options.
    Table {
        /// `https://host[:port][/path-prefix]`.
        url: String,
        /// The methods allowed (any when absent).
        methods: Option<Vec<String>>,
        /// Whether private/local addresses and plain `http://` are allowed.
        allow_private: bool,
    },
}

impl DestinationEntry {
    /// An entry that is just a URL.
    pub fn url(url: impl Into<String>) -> Self {
        DestinationEntry::Url(url.into())
    }

    /// The URL, the methods (empty for any) and `allow_private`.
    pub fn parts(&self) -> (&str, &[String], bool) {
        match self {
            DestinationEntry::Url(url) => (url, &[], false),
            DestinationEntry::Table {
                url,
                methods,
                allow_private,
            } => (url, methods.as_deref().unwrap_or(&[]), *allow_private),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDestination {
    Url(String),
    Table(DestinationTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationTable {
    url: String,
    methods: Option<Vec<String>>,
    #[serde(default)]
    allow_private: bool,
}

impl TryFrom<RawDestination> for DestinationEntry {
    type Error = String;
    fn try_from(raw: RawDestination) -> Result<Self, String> {
        Ok(match raw {
            RawDestination::Url(url) => DestinationEntry::Url(url),
            RawDestination::Table(t) => DestinationEntry::Table {
                url: t.url,
                methods: t.methods,
                allow_private: t.allow_private,
            },
        })
    }
}

/// `inject = { header = "NAME", format = "Bearer {}" }`, `{ basic =
/// "USER" }` or `{ query = "NAME" }`: exactly one of `header`, `basic`,
/// `query`. See [`crate::InjectRule`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectEntry {
    /// A header to set.
    pub header: Option<String>,
    /// The header's value with `{}` for the secret (default `{}`).
    pub format: Option<String>,
    /// Basic auth with this user name and the secret as password.
    pub basic: Option<String>,
    /// A query parameter to add.
    pub query: Option<String>,
}

impl InjectEntry {
    /// A header `name: format`, `{}` standing for the secret.
    pub fn header(name: impl Into<String>, format: impl Into<String>) -> Self {
        InjectEntry {
            header: Some(name.into()),
            format: Some(format.into()),
            ..InjectEntry::default()
        }
    }

    /// `Authorization: Basic base64(username:secret)`.
    pub fn basic(username: impl Into<String>) -> Self {
        InjectEntry {
            basic: Some(username.into()),
            ..InjectEntry::default()
        }
    }

    /// A query parameter `name=secret`.
    pub fn query(name: impl Into<String>) -> Self {
        InjectEntry {
            query: Some(name.into()),
            ..InjectEntry::default()
        }
    }
}

/// The top-level `[audit]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// JSON Lines file the records are appended to, relative to the
    /// manifest's folder. Without it, nothing is recorded.
    pub path: Option<PathBuf>,
    /// Whether to fsync the file after every record (default `false`: each
    /// record is written with one `write(2)` before the call returns).
    #[serde(default)]
    pub fsync: bool,
    /// How many denials one call may pile up before it is stopped and
    /// marked suspicious (default 3).
    pub max_denials: Option<u32>,
    /// Whether to screen tool outputs for known prompt-injection patterns
    /// (default `false`). A match adds a flag and a record; the output is
    /// never changed.
    #[serde(default)]
    pub screen: bool,
}

/// `[plugins.NAME.tools.TOOL]`: settings of one tool.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolEntry {
    /// When a call needs approval; unset, the tool's effect decides.
    pub approval: Option<ApprovalEntry>,
}

/// `approval = "never" | "always" | { rules = ["/amount > 100", ...] }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawApproval")]
pub enum ApprovalEntry {
    /// Never ask (not allowed for destructive tools).
    Never,
    /// Ask for every call.
    Always,
    /// Ask when any rule holds (see [`crate::policy::ApprovalRule`]).
    Rules(Vec<String>),
}

impl ApprovalEntry {
    /// `Rules` from anything that lists rule strings.
    pub fn rules<I: IntoIterator<Item = S>, S: Into<String>>(rules: I) -> Self {
        ApprovalEntry::Rules(rules.into_iter().map(Into::into).collect())
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawApproval {
    Mode(String),
    Table(RulesTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesTable {
    rules: Vec<String>,
}

impl TryFrom<RawApproval> for ApprovalEntry {
    type Error = String;
    fn try_from(raw: RawApproval) -> Result<Self, String> {
        match raw {
            RawApproval::Mode(m) if m == "never" => Ok(ApprovalEntry::Never),
            RawApproval::Mode(m) if m == "always" => Ok(ApprovalEntry::Always),
            RawApproval::Mode(m) => Err(format!(
                "unknown approval `{m}`: use \"never\", \"always\" or {{ rules = [...] }}"
            )),
            RawApproval::Table(t) => Ok(ApprovalEntry::Rules(t.rules)),
        }
    }
}

/// One `[plugins.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// Path of the component, relative to the manifest's folder.
    pub source: PathBuf,
    /// The sha256 of the component's bytes, as 64 hex digits.
    pub sha256: Option<String>,
    /// The sha256 of the plugin's declared tool list (names, descriptions,
    /// schemas, effects), as `portcullis pin` writes it; a plugin whose
    /// tool list no longer matches is refused.
    pub tools_sha256: Option<String>,
    /// Directory grants.
    #[serde(default)]
    pub dirs: Vec<DirEntry>,
    /// Environment variables the plugin sees (nothing else of the host's).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// HTTP destinations the plugin may reach (its egress allowlist).
    #[serde(default)]
    pub http: Vec<HttpEntry>,
    /// Resource limits; unset ones take the documented defaults.
    #[serde(default)]
    pub limits: LimitsEntry,
    /// Per-tool settings, by tool name.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolEntry>,
    /// Names of the `[secrets]` the plugin may ask the host to attach.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Interfaces the plugin's runtime imports but may never use, linked as
    /// deny-everything implementations (`"wasi:sockets/*"` or one
    /// interface such as `"wasi:sockets/tcp"`).
    #[serde(default)]
    pub deny_imports: Vec<String>,
}

/// One egress allowlist entry: `"scheme://host[:port][/path]"`, or a
/// table with that `url` and options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum HttpEntry {
    /// Just the URL: `GET` and `HEAD` allowed, public addresses only.
    Url(String),
    /// The URL with options.
    Table(HttpTable),
}

/// `{ url = "...", methods = [...], allow_private = true }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTable {
    /// `scheme://host[:port][/path]`; see [`crate::HttpRule`].
    pub url: String,
    /// Methods allowed (default `GET` and `HEAD`).
    pub methods: Option<Vec<String>>,
    /// Allow connections to private, loopback and other special-purpose
    /// addresses (default `false`): only for local services you trust.
    #[serde(default)]
    pub allow_private: bool,
}

impl HttpEntry {
    /// The entry's URL text.
    pub fn url(&self) -> &str {
        match self {
            HttpEntry::Url(url) => url,
            HttpEntry::Table(t) => &t.url,
        }
    }
}

impl From<&str> for HttpEntry {
    fn from(url: &str) -> Self {
        HttpEntry::Url(url.to_string())
    }
}

impl From<String> for HttpEntry {
    fn from(url: String) -> Self {
        HttpEntry::Url(url)
    }
}

impl From<HttpTable> for HttpEntry {
    fn from(table: HttpTable) -> Self {
        HttpEntry::Table(table)
    }
}

impl HttpTable {
    /// An entry for `url` with the default methods and public addresses
    /// only.
    pub fn new(url: impl Into<String>) -> Self {
        HttpTable {
            url: url.into(),
            methods: None,
            allow_private: false,
        }
    }

    /// Allows exactly these methods.
    pub fn methods<I: IntoIterator<Item = S>, S: Into<String>>(mut self, methods: I) -> Self {
        self.methods = Some(methods.into_iter().map(Into::into).collect());
        self
    }

    /// Allows private and other special-purpose addresses (local services
    /// and tests only).
    pub fn allow_private(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }
}

/// One directory grant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirEntry {
    /// Host directory, relative to the manifest's folder. Must exist.
    pub host: PathBuf,
    /// Absolute path at which the plugin sees it, e.g. `/docs`.
    pub guest: String,
    /// `read-only` (default) or `read-write`.
    #[serde(default)]
    pub mode: DirMode,
    /// Why a dangerous folder (`/`, the home folder, `/etc`, `/proc`,
    /// `/sys`, `/dev`, `/run`, `/boot`) is granted anyway; without it such
    /// a grant is refused.
    pub unsafe_allow: Option<String>,
}

/// Access mode of a directory grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirMode {
    /// The plugin can read files and list directories.
    #[default]
    ReadOnly,
    /// The plugin can also create, write, rename and remove.
    ReadWrite,
}

impl DirMode {
    /// As the manifest spells it: `read-only` or `read-write`.
    pub fn as_str(self) -> &'static str {
        match self {
            DirMode::ReadOnly => "read-only",
            DirMode::ReadWrite => "read-write",
        }
    }

    /// In words for people: `reads` or `reads and writes`.
    pub fn describe(self) -> &'static str {
        match self {
            DirMode::ReadOnly => "reads",
            DirMode::ReadWrite => "reads and writes",
        }
    }
}

/// `[plugins.NAME.limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsEntry {
    /// Fuel units (about one per WebAssembly instruction).
    pub fuel: Option<u64>,
    /// Total of all linear memories of one instance.
    pub memory: Option<ByteSize>,
    /// Wall-clock time of one call.
    pub timeout: Option<HumanDuration>,
    /// Size of the tool's output.
    pub output: Option<ByteSize>,
    /// Bytes kept of each of stdout and stderr; the rest is counted and
    /// discarded.
    pub stdio: Option<ByteSize>,
    /// HTTP requests per call.
    pub http_requests: Option<u32>,
    /// Bytes of one HTTP response body (after decompression).
    pub http_response: Option<ByteSize>,
    /// Bytes of one HTTP request body.
    pub http_request_body: Option<ByteSize>,
    /// Time of one HTTP request, from resolution to the last body byte.
    pub http_timeout: Option<HumanDuration>,
    /// Time to establish one TCP connection.
    pub http_connect_timeout: Option<HumanDuration>,
    /// Bytes one call may write through read-write grants.
    pub disk_write: Option<ByteSize>,
    /// Files, directories and links one call may create through
    /// read-write grants.
    pub disk_files: Option<u32>,
}

impl Manifest {
    /// Parses manifest text. `path` only labels errors.
    ///
    /// # Errors
    ///
    /// [`Error::Manifest`] naming the line, field and problem.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, Error> {
        toml::from_str(text).map_err(|e| {
            Error::manifest(path, e.to_string().trim_end().to_string()).with_hint(
                "see the manifest reference in the README; unknown fields are refused so typos cannot loosen a grant",
            )
        })
    }

    /// Reads and parses the manifest at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::ManifestRead`] if the file cannot be read, [`Error::Manifest`]
    /// if it does not parse.
    pub fn load(path: &Path) -> Result<Manifest, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ManifestRead {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(text, Path::new("m.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn full_manifest_parses() {
        let m = parse(
            r#"
            [plugins.files]
            source = "dist/files.wasm"
            sha256 = "00"
            dirs = [{ host = "docs", guest = "/docs" }, { host = "out", guest = "/out", mode = "read-write" }]
            env = { A = "b" }
            [plugins.files.limits]
            fuel = 10
            memory = "1 MiB"
            timeout = "2s"
            output = 1024
            "#,
        )
        .expect("parses");
        let files = &m.plugins["files"];
        assert_eq!(files.dirs[0].mode, DirMode::ReadOnly);
        assert_eq!(files.dirs[1].mode, DirMode::ReadWrite);
        assert_eq!(files.limits.memory, Some(ByteSize(1 << 20)));
        assert_eq!(files.limits.output, Some(ByteSize(1024)));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = parse("[plugins.a]\nsource = \"a.wasm\"\nnetwork = true\n")
            .expect_err("must be refused");
        assert!(err.contains("unknown field `network`"), "{err}");
        let err = parse("[plugins.a]\nsource = \"a.wasm\"\ndirs = [{ host = \"a\", guest = \"/a\", writable = true }]\n").expect_err("must be refused");
        assert!(err.contains("unknown field `writable`"), "{err}");
    }

    #[test]
    fn unknown_dir_mode_is_refused() {
        let err = parse("[plugins.a]\nsource = \"a.wasm\"\ndirs = [{ host = \"a\", guest = \"/a\", mode = \"rw\" }]\n").expect_err("must be refused");
        assert!(err.contains("unknown variant `rw`"), "{err}");
    }

    #[test]
    fn approvals_and_audit_parse() {
        let m = parse(
            r#"
            [audit]
            path = "audit.jsonl"
            fsync = true
            [plugins.a]
            source = "a.wasm"
            [plugins.a.tools.x]
            approval = "always"
            [plugins.a.tools.y]
            approval = { rules = ["/amount > 100"] }
            [plugins.a.tools.z]
            approval = "never"
            "#,
        )
        .expect("parses");
        let audit = m.audit.expect("audit table");
        assert_eq!(audit.path, Some(PathBuf::from("audit.jsonl")));
        assert!(audit.fsync);
        let tools = &m.plugins["a"].tools;
        assert_eq!(tools["x"].approval, Some(ApprovalEntry::Always));
        assert_eq!(
            tools["y"].approval,
            Some(ApprovalEntry::rules(["/amount > 100"]))
        );
        assert_eq!(tools["z"].approval, Some(ApprovalEntry::Never));
        assert!(
            parse("[plugins.a]\nsource = \"a\"\n[plugins.a.tools.x]\napproval = \"sometimes\"\n")
                .is_err()
        );
        assert!(parse("[audit]\npaht = \"x\"\n").is_err());
    }

    #[test]
    fn secrets_parse_with_every_destination_and_inject_shape() {
        let m = parse(
            r#"
            [plugins.a]
            source = "a.wasm"
            secrets = ["gh"]
            [secrets.gh]
            source = "env:GH"
            destinations = ["https://api.github.com", { url = "http://127.0.0.1:1", methods = ["POST"], allow_private = true }]
            inject = { header = "Authorization", format = "Bearer {}" }
            [secrets.q]
            source = "file:q.txt"
            destinations = ["https://q.example.com"]
            inject = { query = "key" }
            "#,
        )
        .expect("parses");
        assert_eq!(m.plugins["a"].secrets, ["gh"]);
        let gh = &m.secrets["gh"];
        assert_eq!(
            gh.destinations[0],
            DestinationEntry::url("https://api.github.com")
        );
        assert_eq!(
            gh.destinations[1].parts(),
            ("http://127.0.0.1:1", &["POST".to_string()][..], true)
        );
        assert_eq!(gh.inject, InjectEntry::header("Authorization", "Bearer {}"));
        assert_eq!(m.secrets["q"].inject, InjectEntry::query("key"));
        let err = parse("[secrets.a]\nsource = \"env:A\"\ndestinations = [{ url = \"https://a\", allowprivate = true }]\ninject = { query = \"k\" }\n")
            .expect_err("typo refused");
        assert!(err.contains("did not match any variant"), "{err}");
    }

    #[test]
    fn http_entries_parse_as_strings_or_tables() {
        let m = parse(
            r#"
            [plugins.a]
            source = "a.wasm"
            http = ["https://api.example.com", { url = "http://127.0.0.1:8080", methods = ["POST"], allow_private = true }]
            [plugins.a.limits]
            http_requests = 4
            http_response = "2 MiB"
            http_timeout = "3s"
            "#,
        )
        .expect("parses");
        let a = &m.plugins["a"];
        assert_eq!(a.http[0], HttpEntry::Url("https://api.example.com".into()));
        assert!(
            matches!(&a.http[1], HttpEntry::Table(t) if t.allow_private && t.url.ends_with("8080"))
        );
        assert_eq!(a.limits.http_requests, Some(4));
        assert!(
            parse(
                "[plugins.a]\nsource = \"a\"\nhttp = [{ url = \"https://a\", private = true }]\n"
            )
            .is_err()
        );
    }

    #[test]
    fn bare_timeout_number_is_refused() {
        let err = parse("[plugins.a]\nsource = \"a.wasm\"\n[plugins.a.limits]\ntimeout = 5\n")
            .expect_err("must be refused");
        assert!(err.contains("ambiguous"), "{err}");
    }
}
