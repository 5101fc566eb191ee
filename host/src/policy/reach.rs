//! What directory grants may reach, checked across every plugin of a host
//! once all of it is known (design invariant 11): the host's own state
//! (manifest, compile cache, audit log, core dumps, secret files, plugin
//! sources) stays out of every grant, dangerous system folders are
//! refused unless a grant says why, and no two grants alias one folder
//! when either can write. Called by `host::builder` after validation;
//! paths are compared after resolving symlinks.

use super::{DirGrant, DirMode, PluginPolicy};
use std::path::{Component, Path, PathBuf};

/// The host's own files and folders, as configured (resolved here).
#[derive(Debug, Default)]
pub(crate) struct HostState {
    /// The manifest file, if the host was built from one.
    pub(crate) manifest: Option<PathBuf>,
    /// The compile cache folder (holds the key that authenticates it).
    pub(crate) cache: Option<PathBuf>,
    /// The audit log file.
    pub(crate) audit: Option<PathBuf>,
    /// The core dump folder.
    pub(crate) core_dumps: Option<PathBuf>,
    /// `file:` secrets: name and file.
    pub(crate) secret_files: Vec<(String, PathBuf)>,
}

/// Why a grant was refused: the message and a hint.
pub(crate) type Refusal = (String, String);

/// A refused grant: the plugin it belongs to, and why.
pub(crate) type RefusedGrant = (String, Refusal);

/// `path` with symlinks resolved as far as it exists; the missing rest
/// (an audit log or cache not created yet) is appended as written, without
/// `.` and with `..` applied.
pub(crate) fn resolve_existing(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut existing = absolute.as_path();
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            let mut out = canonical;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return normalise(&out);
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return normalise(&absolute),
        }
    }
}

/// Drops `.` and applies `..` textually.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether `inner` is `outer` or lies below it (by components).
fn within(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}

/// Folders a grant may not be, nor lie inside, unless it says why: the
/// kernel's and the system's live state and configuration.
const SYSTEM_FOLDERS: &[&str] = &["/etc", "/proc", "/sys", "/dev", "/run", "/var/run", "/boot"];

/// Why `host` (canonical) is a dangerous grant, if it is: `/`, the user's
/// home or a folder holding it, or a system folder or anything inside one
/// (each compared by canonical path too, so `/var/run -> /run` counts).
pub(crate) fn dangerous(host: &Path, home: Option<&Path>) -> Option<String> {
    if host == Path::new("/") {
        return Some("the whole file system `/`".into());
    }
    for folder in SYSTEM_FOLDERS {
        let plain = Path::new(folder);
        let canonical = std::fs::canonicalize(plain).unwrap_or_else(|_| plain.to_path_buf());
        if within(host, plain) || within(host, &canonical) {
            return Some(format!("the system folder `{folder}`"));
        }
    }
    if let Some(home) = home {
        let canonical = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
        if within(&canonical, host) {
            return Some(format!("the home folder `{}`", home.display()));
        }
    }
    None
}

/// The user's home folder, from `$HOME`.
pub(crate) fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn describe(plugin: &str, grant: &DirGrant) -> String {
    format!(
        "plugin `{plugin}`: {} grant `{}` (as `{}`)",
        grant.mode.as_str(),
        grant.host.display(),
        grant.guest
    )
}

/// Checks every grant of `policies` against the host's state, the
/// dangerous folders and each other.
///
/// # Errors
///
/// The first grant refused, naming it and what it would expose.
pub(crate) fn check(policies: &[PluginPolicy], state: &HostState) -> Result<(), RefusedGrant> {
    let home = home();
    let sources: Vec<(&str, PathBuf)> = policies
        .iter()
        .map(|p| (p.name.as_str(), resolve_existing(&p.source)))
        .collect();
    let manifest = state.manifest.as_deref().map(resolve_existing);
    let cache = state.cache.as_deref().map(resolve_existing);
    let audit = state.audit.as_deref().map(resolve_existing);
    let core_dumps = state.core_dumps.as_deref().map(resolve_existing);
    let secrets: Vec<(&str, PathBuf)> = state
        .secret_files
        .iter()
        .map(|(n, f)| (n.as_str(), resolve_existing(f)))
        .collect();

    let grants: Vec<(&str, &DirGrant)> = policies
        .iter()
        .flat_map(|p| p.dirs.iter().map(move |d| (p.name.as_str(), d)))
        .collect();
    for (i, &(plugin, grant)) in grants.iter().enumerate() {
        // The checks of one grant, so that a refusal names its plugin.
        let checked = (|| -> Result<(), Refusal> {
            let who = describe(plugin, grant);
            let host = grant.host.as_path();
            let writes = grant.mode == DirMode::ReadWrite;
            let refuse = |what: String, hint: &str| {
                Err((format!("{who} would expose {what}"), hint.to_string()))
            };
            let keep_apart =
                "grant a folder that holds only the plugin's data, apart from the host's own files";

            if let Some(why) = dangerous(host, home.as_deref())
                && grant.unsafe_allow.is_none()
            {
                return refuse(
                    why,
                    "grant a narrower folder; if you really mean it, add `unsafe_allow = \"why\"` to this one grant",
                );
            }
            if writes
                && let Some(m) = &manifest
                && within(m, host)
            {
                return refuse(
                    format!(
                        "the manifest `{}`: the plugin could rewrite its own grants and limits",
                        m.display()
                    ),
                    "grant a subfolder that does not hold the manifest (e.g. `files/out`)",
                );
            }
            if let Some(c) = &cache {
                if within(c, host) {
                    return refuse(
                        format!(
                            "the compile cache `{}`: compiled code and its key run in the host",
                            c.display()
                        ),
                        "move the compile cache (`PORTCULLIS_CACHE_DIR`) or narrow the grant",
                    );
                }
                if within(host, c) {
                    return Err((
                        format!("{who} lies inside the compile cache `{}`", c.display()),
                        keep_apart.into(),
                    ));
                }
            }
            if let Some(a) = &audit
                && within(a, host)
            {
                return refuse(
                    format!(
                        "the audit log `{}`: the plugin could read or rewrite the record",
                        a.display()
                    ),
                    "keep `audit.path` outside every granted folder",
                );
            }
            if let Some(d) = &core_dumps {
                if within(d, host) {
                    return refuse(
                        format!(
                            "the core dump folder `{}`: dumps hold other calls' memory",
                            d.display()
                        ),
                        "keep the core dump folder outside every granted folder",
                    );
                }
                if within(host, d) {
                    return Err((
                        format!("{who} lies inside the core dump folder `{}`", d.display()),
                        keep_apart.into(),
                    ));
                }
            }
            if let Some((name, file)) = secrets.iter().find(|(_, f)| within(f, host)) {
                return refuse(
                    format!(
                        "the file `{}` of secret `{name}`: the plugin could read its value",
                        file.display()
                    ),
                    "keep secret files outside every granted folder",
                );
            }
            if let Some((owner, source)) = sources.iter().find(|(_, s)| within(s, host))
                && (writes || *owner == plugin)
            {
                return refuse(
                    format!(
                        "the component `{}` of plugin `{owner}`: its source must never be reached through a grant",
                        source.display()
                    ),
                    "keep plugin components outside every granted folder",
                );
            }
            for &(other_plugin, other) in &grants[i + 1..] {
                let either_writes = writes || other.mode == DirMode::ReadWrite;
                if either_writes && (within(host, &other.host) || within(&other.host, host)) {
                    return Err((
                        format!(
                            "{who} and {} overlap: one could change what the other sees",
                            describe(other_plugin, other)
                        ),
                        "grant folders that do not contain each other when either is read-write"
                            .into(),
                    ));
                }
            }
            Ok(())
        })();
        checked.map_err(|refusal| (plugin.to_string(), refusal))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Limits;

    fn policy(name: &str, dirs: Vec<(PathBuf, DirMode)>) -> PluginPolicy {
        PluginPolicy {
            name: name.into(),
            source: PathBuf::from("/nonexistent/p.wasm"),
            sha256: "0".repeat(64),
            tools_sha256: None,
            pinned_tools: None,
            dirs: dirs
                .into_iter()
                .enumerate()
                .map(|(i, (host, mode))| DirGrant {
                    host: std::fs::canonicalize(&host).unwrap_or(host),
                    guest: format!("/g{i}"),
                    mode,
                    unsafe_allow: None,
                })
                .collect(),
            env: Vec::new(),
            http: Vec::new(),
            limits: Limits::default(),
            approvals: Default::default(),
            secrets: Vec::new(),
            deny_imports: Vec::new(),
        }
    }

    #[test]
    fn system_folders_and_their_insides_are_dangerous() {
        for bad in ["/", "/etc", "/proc", "/proc/self", "/sys", "/dev", "/boot"] {
            assert!(dangerous(Path::new(bad), None).is_some(), "{bad}");
        }
        let home = Path::new("/home/someone");
        assert!(dangerous(home, Some(home)).is_some());
        assert!(dangerous(Path::new("/home"), Some(home)).is_some());
        assert!(dangerous(Path::new("/home/someone/docs"), Some(home)).is_none());
        assert!(dangerous(Path::new("/tmp/x"), Some(home)).is_none());
    }

    #[test]
    fn missing_tails_are_kept_after_the_resolved_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = std::fs::canonicalize(dir.path()).expect("canonical");
        let got = resolve_existing(&dir.path().join("a/./b/../c.jsonl"));
        assert_eq!(got, real.join("a/c.jsonl"));
    }

    #[test]
    fn read_only_grants_may_overlap_but_not_with_a_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let ro = policy(
            "a",
            vec![
                (dir.path().into(), DirMode::ReadOnly),
                (sub.clone(), DirMode::ReadOnly),
            ],
        );
        assert!(check(&[ro], &HostState::default()).is_ok());
        let rw = policy(
            "a",
            vec![
                (dir.path().into(), DirMode::ReadWrite),
                (sub, DirMode::ReadOnly),
            ],
        );
        let (plugin, (why, _)) = check(&[rw], &HostState::default()).expect_err("aliased");
        assert_eq!(plugin, "a");
        assert!(why.contains("overlap"), "{why}");
    }
}
