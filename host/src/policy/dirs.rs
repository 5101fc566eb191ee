//! Directory grants of one plugin: existing directories, canonical, at
//! plain guest paths that do not overlap. Part of validation (`config`);
//! what grants may reach across plugins is `reach`.

use super::{DirGrant, DirSpec, Invalid, resolve};
use std::path::Path;

/// Directory grants: existing directories, canonical, at plain guest paths
/// that do not overlap.
pub(super) fn dirs(
    name: &str,
    base: &Path,
    entries: Vec<DirSpec>,
) -> Result<Vec<DirGrant>, Invalid> {
    let mut dirs: Vec<DirGrant> = Vec::new();
    for (host, guest, mode, unsafe_allow) in entries {
        if unsafe_allow
            .as_deref()
            .is_some_and(|why| why.trim().is_empty())
        {
            return Err((
                format!(
                    "plugin `{name}`: `dirs` entry `{}`: `unsafe_allow` is empty",
                    host.display()
                ),
                Some(
                    "say why the folder must be granted, e.g. `unsafe_allow = \"reads /proc/cpuinfo\"`",
                ),
            ));
        }
        let joined = resolve(base, &host);
        let canonical = std::fs::canonicalize(&joined).map_err(|e| {
            (
                format!("plugin `{name}`: `dirs` entry `{}`: {e}", joined.display()),
                Some("directory grants must name existing directories"),
            )
        })?;
        if !canonical.is_dir() {
            return Err((
                format!(
                    "plugin `{name}`: `dirs` entry `{}` is not a directory",
                    joined.display()
                ),
                None,
            ));
        }
        check_guest_path(&guest).map_err(|why| {
            (
                format!("plugin `{name}`: `dirs` guest path `{guest}` {why}"),
                Some("guest paths are absolute and plain, e.g. `/docs`"),
            )
        })?;
        let guest = normalise_guest(&guest);
        if let Some(other) = dirs.iter().find(|d| overlaps(&d.guest, &guest)) {
            return Err((
                format!(
                    "plugin `{name}`: guest paths `{}` and `{guest}` overlap",
                    other.guest
                ),
                Some("give each directory grant its own guest path"),
            ));
        }
        dirs.push(DirGrant {
            host: canonical,
            guest,
            mode,
            unsafe_allow,
        });
    }
    Ok(dirs)
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
