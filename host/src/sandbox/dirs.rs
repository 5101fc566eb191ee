//! Granted directories, opened once when the plugin is loaded and shared by
//! every call.
//!
//! The policy names each grant by its canonical path, resolved when the
//! manifest was validated. Opening that path again for every call would let
//! whoever can rename things on the host (another plugin with a read-write
//! grant nearby, another process) swap the folder for a symlink between two
//! calls, and the next call would follow it. So each grant is opened here
//! exactly once, at load, refusing any symlink on the way
//! (`openat2(RESOLVE_NO_SYMLINKS)` on Linux, `O_NOFOLLOW` on the last
//! component elsewhere), and wasmtime-wasi's preopen is made from that open
//! handle, on Linux through `/proc/self/fd/N`, which reopens the very
//! directory the handle holds (wasmtime-wasi 48 has no public way to hand it
//! an open directory), never a path lookup of the original name.
//!
//! The preopens made then are what every call gets: each call's WASI
//! context holds the same open directories (shared handles, not paths). A
//! folder swapped after load is not seen; a folder moved away is still the
//! one served; and a call opens nothing before its plugin runs. Sharing one
//! open directory is safe: a plugin only reaches it through its own handle
//! table, which dies with the call; WASI has no call that changes the
//! directory's open state (listing opens `.` afresh, so no read position is
//! shared), and every path is resolved beneath it.
//!
//! Elsewhere (no `/proc`), the canonical path is opened a second time, at
//! load: the race above remains for that moment, and the README says so.

use crate::policy::{DirGrant, DirMode};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// A plugin's grants, open: the filesystem part of every call's WASI
/// context.
#[derive(Default)]
pub(crate) struct OpenDirs {
    preopens: WasiFilesystemCtx,
    /// The guest paths, for `Debug`.
    guests: Vec<String>,
}

impl std::fmt::Debug for OpenDirs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenDirs")
            .field("guests", &self.guests)
            .finish_non_exhaustive()
    }
}

impl OpenDirs {
    /// Opens every grant of `dirs`, refusing symlinks, as preopens whose
    /// file operations run on the calling thread when `in_place` (else on
    /// tokio's blocking threads).
    pub(crate) fn open(dirs: &[DirGrant], in_place: bool) -> Result<OpenDirs, String> {
        let mut builder = WasiCtxBuilder::new();
        // Before the preopens: each directory takes the setting with it.
        builder.allow_blocking_current_thread(in_place);
        for dir in dirs {
            let fd = open_no_symlinks(&dir.host).map_err(|e| {
                format!(
                    "cannot open granted directory `{}` (guest `{}`) without following symlinks: {e}",
                    dir.host.display(),
                    dir.guest
                )
            })?;
            let perms = match dir.mode {
                DirMode::ReadOnly => FsPerms::ReadOnly,
                DirMode::ReadWrite => FsPerms::ReadWrite,
            };
            // The preopen holds its own open of the directory `fd` holds;
            // `fd` is closed when it goes out of scope.
            builder
                .preopened_dir(reopen(&fd, &dir.host), &dir.guest, perms)
                .map_err(|e| {
                    format!(
                        "cannot open granted directory `{}` (guest `{}`): {e}",
                        dir.host.display(),
                        dir.guest
                    )
                })?;
        }
        let mut ctx = builder.build();
        Ok(OpenDirs {
            preopens: std::mem::take(ctx.filesystem()),
            guests: dirs.iter().map(|d| d.guest.clone()).collect(),
        })
    }

    /// Gives a call's WASI context the grants: the directories opened at
    /// load, shared (nothing is opened here).
    pub(crate) fn grant(&self, wasi: &mut WasiCtx) {
        *wasi.filesystem() = self.preopens.clone();
    }
}

/// What the preopen opens: `fd`'s own `/proc/self/fd` entry on Linux, the
/// canonical path elsewhere.
fn reopen(fd: &OwnedFd, host: &std::path::Path) -> PathBuf {
    if cfg!(target_os = "linux") {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    } else {
        host.to_path_buf()
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
