//! Per-case copies of directory grants: a case of a plugin with a
//! read-write grant runs on a host whose grants are fresh temporary copies of the granted
//! folders, so a case never changes the author's files and never sees what
//! an earlier case wrote. The copy's host is built from a temporary
//! manifest: the original with the plugin's `dirs` pointed at the copies
//! and every relative path (`source`, `dirs`, `file:` secrets,
//! `audit.path`) made absolute, so all else loads as the original does.

use super::Failure;
use portcullis::PluginPolicy;
use std::path::{Path, PathBuf};

/// A temporary folder holding the copies and the manifest that grants them.
pub(super) struct Copies {
    dir: PathBuf,
}

impl Drop for Copies {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new private folder under the system's temporary folder.
fn temp_dir() -> std::io::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "portcullis-test-{}-{n}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}

impl Copies {
    /// Copies every folder `policy` is granted and writes the manifest.
    pub(super) fn make(manifest: &Path, policy: &PluginPolicy) -> Result<Copies, Failure> {
        let fail = |what: String| {
            Failure::Config {
            message: what,
            hint: Some(
                "`portcullis test` runs each case of a plugin with `dirs` on a temporary copy of the granted folders".into(),
            ),
        }
        };
        let copies_dir = Copies {
            dir: temp_dir().map_err(|e| fail(format!("cannot create a temporary folder: {e}")))?,
        };
        let dir = &copies_dir.dir;
        let base = manifest
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let base = std::fs::canonicalize(&base).unwrap_or(base);
        let text = std::fs::read_to_string(manifest)
            .map_err(|e| fail(format!("cannot read `{}`: {e}", manifest.display())))?;
        let mut doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e| fail(format!("`{}` is not TOML: {e}", manifest.display())))?;
        let mut copies = Vec::new();
        for (i, grant) in policy.dirs.iter().enumerate() {
            let copy = dir.join(format!("grant-{i}"));
            copy_tree(&grant.host, &copy).map_err(|e| {
                fail(format!(
                    "cannot copy granted folder `{}`: {e}",
                    grant.host.display()
                ))
            })?;
            copies.push((grant.guest.clone(), copy));
        }
        absolutize(&mut doc, &base, &policy.name, &copies);
        std::fs::write(dir.join("portcullis.toml"), doc.to_string())
            .map_err(|e| fail(format!("cannot write the temporary manifest: {e}")))?;
        Ok(copies_dir)
    }

    /// The manifest granting the copies.
    pub(super) fn manifest(&self) -> PathBuf {
        self.dir.join("portcullis.toml")
    }
}

/// Makes the manifest's relative paths absolute against `base`, and points
/// plugin `name`'s grants at `copies` (by guest path).
fn absolutize(
    doc: &mut toml_edit::DocumentMut,
    base: &Path,
    name: &str,
    copies: &[(String, PathBuf)],
) {
    let abs = |p: &str| base.join(p).display().to_string();
    if let Some(plugins) = doc.get_mut("plugins").and_then(|p| p.as_table_like_mut()) {
        for (plugin, entry) in plugins.iter_mut() {
            let Some(entry) = entry.as_table_like_mut() else {
                continue;
            };
            if let Some(source) = entry.get("source").and_then(|s| s.as_str()) {
                let source = abs(source);
                entry.insert("source", toml_edit::value(source));
            }
            let Some(dirs) = entry.get_mut("dirs").and_then(|d| d.as_array_mut()) else {
                continue;
            };
            for grant in dirs.iter_mut() {
                let Some(grant) = grant.as_inline_table_mut() else {
                    continue;
                };
                let guest = grant
                    .get("guest")
                    .and_then(|g| g.as_str())
                    .map(str::to_string);
                let copy = copies
                    .iter()
                    .find(|(g, _)| plugin.get() == name && Some(g) == guest.as_ref());
                let host = match (copy, grant.get("host").and_then(|h| h.as_str())) {
                    (Some((_, copy)), _) => copy.display().to_string(),
                    (None, Some(host)) => abs(host),
                    (None, None) => continue,
                };
                grant.insert("host", host.into());
            }
        }
    }
    if let Some(secrets) = doc.get_mut("secrets").and_then(|p| p.as_table_like_mut()) {
        for (_, secret) in secrets.iter_mut() {
            let Some(secret) = secret.as_table_like_mut() else {
                continue;
            };
            if let Some(file) = secret
                .get("source")
                .and_then(|s| s.as_str())
                .and_then(|s| s.strip_prefix("file:"))
            {
                let source = format!("file:{}", abs(file));
                secret.insert("source", toml_edit::value(source));
            }
        }
    }
    if let Some(audit) = doc.get_mut("audit").and_then(|a| a.as_table_like_mut())
        && let Some(path) = audit.get("path").and_then(|p| p.as_str())
    {
        let path = abs(path);
        audit.insert("path", toml_edit::value(path));
    }
}

/// Copies folder `from` to `to`: files, folders and (on Unix) symlinks as
/// links, never followed.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else if kind.is_symlink() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        }
    }
    Ok(())
}
