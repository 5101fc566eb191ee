//! Helpers for Portcullis's integration tests: where the built plugins are,
//! hosts configured the way each test needs, and a filesystem fixture with a
//! sentinel outside every grant.
//!
//! The plugins are built by `plugins/build.sh` (the README's test command
//! runs it first); the tests load the real components from `plugins/dist`.
//!
//! The network fixtures live in their own modules: [`net`] ([`Net`], the
//! loopback network of the egress tests, and [`on_both`], which runs one
//! HTTP claim through both interfaces), `loopback` (the servers and the
//! resolver it starts) and [`tracker`] (a fake REST issue tracker).

mod loopback;
pub mod net;
pub mod tracker;

pub use loopback::Allowed;
pub use net::{Interface, Net, on_both};

use portcullis::{
    ApprovalRequest, Approver, Decision, DirMode, Host, Limits, PluginConfig, sha256_hex,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The built component `plugins/dist/NAME.wasm`.
///
/// # Panics
///
/// If it has not been built, with the command that builds it.
pub fn plugin_path(name: &str) -> PathBuf {
    let path = repo_root()
        .join("plugins/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "`{}` is missing: run `plugins/build.sh` first (the README's test command does)",
        path.display()
    );
    path
}

/// The sha256 of a built plugin, as read now.
pub fn plugin_sha(name: &str) -> String {
    sha256_hex(&std::fs::read(plugin_path(name)).expect("plugin is readable"))
}

/// A temporary tree for filesystem tests:
///
/// ```text
/// root/
///   ro/        granted read-only at /ro:  notes.txt, link-out -> ../outside/secret.txt
///   rw/        granted read-write at /rw: scratch.txt
///   outside/   granted to nobody:         secret.txt (the sentinel)
/// ```
#[derive(Debug)]
pub struct Fixture {
    dir: tempfile::TempDir,
    snapshot: BTreeMap<PathBuf, Snapshot>,
}

/// What a path outside the grants looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Snapshot {
    File(Vec<u8>),
    Dir,
    Link(PathBuf),
}

/// Contents of the sentinel file outside every grant.
pub const SECRET: &str = "sentinel: the plugin must never read or change this";

impl Fixture {
    /// Creates the tree and records the state of everything outside the
    /// grants.
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        for sub in ["ro", "rw", "outside"] {
            std::fs::create_dir(root.join(sub)).expect("mkdir");
        }
        std::fs::write(root.join("ro/notes.txt"), "read-only notes\n").expect("write");
        std::fs::write(root.join("rw/scratch.txt"), "scratch\n").expect("write");
        std::fs::write(root.join("outside/secret.txt"), SECRET).expect("write");
        std::fs::write(root.join("top-level.txt"), SECRET).expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink("../outside/secret.txt", root.join("ro/link-out"))
            .expect("symlink");
        let mut fixture = Fixture {
            dir,
            snapshot: BTreeMap::new(),
        };
        fixture.snapshot = fixture.outside_state();
        fixture
    }

    /// The fixture's root folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the fixture.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Everything in the fixture outside `ro/` and `rw/`, plus the read-only
    /// grant itself (which no call may change).
    fn outside_state(&self) -> BTreeMap<PathBuf, Snapshot> {
        let mut state = BTreeMap::new();
        walk(self.root(), self.root(), &mut state);
        state
            .into_iter()
            .filter(|(rel, _)| !rel.starts_with("rw"))
            .collect()
    }

    /// Panics if anything outside the read-write grant changed: the
    /// sentinel, the top-level files, and the read-only grant.
    pub fn assert_outside_unchanged(&self) {
        let now = self.outside_state();
        assert_eq!(
            now, self.snapshot,
            "something outside the read-write grant was changed"
        );
    }

    /// A host running the `hostile` plugin with `ro/` at `/ro` (read-only)
    /// and `rw/` at `/rw` (read-write). The read-write grant makes every
    /// tool `write`, which needs approval: these hosts approve everything
    /// ([`ApproveAll`]), so the tests reach the sandbox.
    pub async fn hostile(&self, limits: Limits) -> Host {
        Host::builder()
            .approver(ApproveAll)
            .plugin(
                PluginConfig::new("hostile", plugin_path("hostile"))
                    .sha256(plugin_sha("hostile"))
                    .dir(self.path("ro"), "/ro", DirMode::ReadOnly)
                    .dir(self.path("rw"), "/rw", DirMode::ReadWrite)
                    .limits(limits),
            )
            .build()
            .await
            .expect("the hostile plugin loads")
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Snapshot>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(root).expect("inside root").to_path_buf();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap_or_default();
            out.insert(rel, Snapshot::Link(target));
        } else if meta.is_dir() {
            out.insert(rel, Snapshot::Dir);
            walk(root, &path, out);
        } else {
            out.insert(
                rel,
                Snapshot::File(std::fs::read(&path).unwrap_or_default()),
            );
        }
    }
}

/// Approves every request (test hosts only).
#[derive(Debug, Clone, Copy)]
pub struct ApproveAll;

impl Approver for ApproveAll {
    fn decide(&self, request: &ApprovalRequest) -> Decision {
        request.approve_by("test")
    }
}

/// A host running the `refunds` example plugin (no grants) with
/// `refund` asking for approval when `/amount > 100`.
pub fn refunds() -> PluginConfig {
    PluginConfig::new("refunds", plugin_path("refunds"))
        .sha256(plugin_sha("refunds"))
        .approval(
            "refund",
            portcullis::manifest::ApprovalEntry::rules(["/amount > 100"]),
        )
}

/// The records of a JSON Lines audit file, parsed.
pub fn audit_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("audit log is readable")
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is one JSON record"))
        .collect()
}

/// The `event` names of the records, in order.
pub fn events(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["event"].as_str().expect("event").to_string())
        .collect()
}

/// Calls `tool` (`plugin.tool`) with `args` and returns the output value.
pub async fn call_value(
    host: &portcullis::Host,
    tool: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, portcullis::Error> {
    host.call(tool, &args.to_string(), &portcullis::CallContext::new())
        .await
        .map(|out| out.value)
}

/// The error a tool itself reported.
///
/// # Panics
///
/// If the result is anything else.
pub fn tool_error(result: Result<serde_json::Value, portcullis::Error>) -> portcullis::ToolError {
    match result {
        Err(portcullis::Error::Tool { error, .. }) => error,
        other => panic!("expected a tool error, got {other:?}"),
    }
}

/// Default limits with some fields changed, for tests that need a limit to
/// trip quickly.
pub fn limits(change: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    change(&mut limits);
    limits
}

/// Every form of `token` a leak could take, computed independently of the
/// host's scrubber: raw; hex in both cases; percent-encoded (upper case);
/// and, for base64 and base64url at each of the three alignments, the
/// characters that encode only the token's bytes, so the token inside a
/// longer encoded stream (`base64("user:" + token)`) is caught too.
pub fn secret_forms(token: &str) -> Vec<Vec<u8>> {
    const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = token.as_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let percent: String = bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut forms = vec![
        bytes.to_vec(),
        hex.to_uppercase().into_bytes(),
        hex.into_bytes(),
        percent.into_bytes(),
    ];
    for alphabet in [STANDARD, URL_SAFE] {
        for k in 0..3 {
            let mut prefixed = vec![b'x'; k];
            prefixed.extend_from_slice(bytes);
            let mut encoded = Vec::new();
            for chunk in prefixed.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
                for i in 0..=chunk.len() {
                    encoded.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize]);
                }
            }
            let start = (8 * k).div_ceil(6);
            let end = (8 * (k + bytes.len())) / 6;
            forms.push(encoded[start..end].to_vec());
        }
    }
    forms
}

/// Asserts that no form of `token` ([`secret_forms`]) occurs in `haystack`.
pub fn assert_no_secret(what: &str, haystack: &[u8], token: &str) {
    for form in secret_forms(token) {
        assert!(
            !haystack.windows(form.len()).any(|w| w == form.as_slice()),
            "{what} holds the secret as `{}`",
            String::from_utf8_lossy(&form)
        );
    }
}
