//! Granted directories, opened once when the plugin is loaded.
//!
//! The policy names each grant by its canonical path, resolved when the
//! manifest was validated. Opening that path again for every call would let
//! whoever can rename things on the host (another plugin with a read-write
//! grant nearby, another process) swap the folder for a symlink between two
//! calls, and the next call would follow it. So each grant is opened here
//! exactly once, at load, refusing any symlink on the way
//! (`openat2(RESOLVE_NO_SYMLINKS)` on Linux, `O_NOFOLLOW` on the last
//! component elsewhere), and every call's preopen is made from that open
//! handle: on Linux through `/proc/self/fd/N`, which reopens the very
//! directory the handle holds (wasmtime-wasi 48 has no public way to hand it
//! an open directory), never a path lookup of the original name. A folder
//! swapped after load is not seen; a folder moved away is still the one
//! served.
//!
//! Elsewhere (no `/proc`), a call opens the canonical path again: the
//! race above remains there, and the README says so.

use crate::policy::{DirGrant, DirMode};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// One grant, open.
#[derive(Debug)]
struct OpenDir {
    /// Open for the plugin's life.
    fd: OwnedFd,
    /// The canonical path, opened again per call only where there is no
    /// `/proc/self/fd`.
    host: PathBuf,
    guest: String,
    perms: FsPerms,
}

impl OpenDir {
    /// What a call opens: the handle's own `/proc/self/fd` entry on Linux.
    fn reopen(&self) -> PathBuf {
        if cfg!(target_os = "linux") {
            PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
        } else {
            self.host.clone()
        }
    }
}

/// A plugin's grants, open.
#[derive(Debug, Default)]
pub(crate) struct OpenDirs(Vec<OpenDir>);

impl OpenDirs {
    /// Opens every grant of `dirs`, refusing symlinks.
    pub(crate) fn open(dirs: &[DirGrant]) -> Result<OpenDirs, String> {
        let mut open = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let fd = open_no_symlinks(&dir.host).map_err(|e| {
                format!(
                    "cannot open granted directory `{}` (guest `{}`) without following symlinks: {e}",
                    dir.host.display(),
                    dir.guest
                )
            })?;
            open.push(OpenDir {
                fd,
                host: dir.host.clone(),
                guest: dir.guest.clone(),
                perms: match dir.mode {
                    DirMode::ReadOnly => FsPerms::ReadOnly,
                    DirMode::ReadWrite => FsPerms::ReadWrite,
                },
            });
        }
        Ok(OpenDirs(open))
    }

    /// Adds each grant to a call's WASI context, from its open handle.
    pub(crate) fn preopen(&self, builder: &mut WasiCtxBuilder) -> Result<(), String> {
        for dir in &self.0 {
            builder
                .preopened_dir(dir.reopen(), &dir.guest, dir.perms)
                .map_err(|e| format!("cannot open granted directory `{}`: {e}", dir.guest))?;
        }
        Ok(())
    }
}

/// Opens the directory at `path` read-only, refusing a symlink anywhere in
/// the path (Linux 5.6+), or at least as its last component.
fn open_no_symlinks(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    use rustix::fs::{CWD, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    match rustix::fs::openat2(
        CWD,
        path,
        flags,
        Mode::empty(),
        rustix::fs::ResolveFlags::NO_SYMLINKS,
    ) {
        Ok(fd) => return Ok(fd),
        // Older kernels: fall back to `O_NOFOLLOW` below.
        Err(e) if e == rustix::io::Errno::NOSYS => {}
        Err(e) => return Err(e.into()),
    }
    Ok(rustix::fs::openat(CWD, path, flags, Mode::empty())?)
}
