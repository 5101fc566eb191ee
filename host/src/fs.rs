//! Files the host itself writes: the folder a manifest's relative paths
//! live in, writing a file so that readers never see half of it, a
//! directory only this user owns and can write, files in it opened
//! without following symlinks, and a sealed in-memory copy of a file.
//! Depends on nothing here.

use std::io::Write as _;
use std::path::Path;

/// The folder `path` lies in (`.` for a bare file name): where a
/// manifest's relative paths, and a file's temporary sibling, live.
pub(crate) fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to a temporary file beside `path` (keeping the old
/// file's permissions), then renames it over `path`: a reader, or a crash,
/// sees the old file or the whole new one, never half.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // Unique per process and write, so two writers of one path never share
    // a temporary file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = folder_of(path).join(format!(".{name}.{}.{write}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Creates `dir` (and missing parents) readable only by this user, or
/// checks that an existing one is a real directory (not a symlink) that
/// this user (the effective uid) owns and other users cannot write to.
/// An existing directory's mode is never changed.
///
/// # Errors
///
/// Why `dir` is not such a directory.
pub(crate) fn private_dir(dir: &Path) -> Result<(), String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    // Not followed: a symlink planted in place of the directory would send
    // the host's private files wherever it points.
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
    if meta.file_type().is_symlink() {
        return Err(format!("`{}` is a symlink", dir.display()));
    }
    if !meta.is_dir() {
        return Err(format!("`{}` is not a directory", dir.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(format!(
                "`{}` belongs to user {}, not to this user ({me})",
                dir.display(),
                meta.uid()
            ));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(format!("`{}` can be written by other users", dir.display()));
        }
    }
    Ok(())
}

/// Opens `path` for reading without following a symlink in its last
/// component (a symlink is an error, never its target).
pub(crate) fn open_nofollow(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    options.open(path)
}

/// Reads the whole file at `path` without following a symlink.
pub(crate) fn read_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    open_nofollow(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Creates `path` new (never replacing or following anything there),
/// readable and writable by this user only (0600), holding `bytes`.
pub(crate) fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A private in-memory copy of a file, sealed (Linux `memfd`): once made,
/// nobody can write, grow or shrink it, so a mapping of it cannot change
/// under its reader or fault on a cut-off end, whatever happens to the
/// file it was copied from.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(crate) struct SealedCopy(std::fs::File);

#[cfg(target_os = "linux")]
impl SealedCopy {
    /// Bytes copied at a time: one buffer, reused.
    const CHUNK: usize = 256 << 10;

    /// Copies `file`, which must be `expected` bytes long (it changed
    /// otherwise: an error), showing `each` every chunk as it is copied,
    /// and seals the copy. Reads are positional: `file`'s own offset does
    /// not move, so a caller can still read it afresh if this fails.
    ///
    /// What `each` sees is what was written to the copy. Until the copy is
    /// sealed, another process of the same user could still write to it
    /// through `/proc` (nothing else can reach it); such a process can read
    /// the host's own files, the compile cache's key included, anyway.
    pub(crate) fn of(
        file: &std::fs::File,
        expected: u64,
        mut each: impl FnMut(&[u8]),
    ) -> std::io::Result<SealedCopy> {
        use rustix::fs::{MemfdFlags, SealFlags};
        use std::os::unix::fs::FileExt;
        let fd = rustix::fs::memfd_create(
            "portcullis-sealed",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut copy = std::fs::File::from(fd);
        let mut buffer = vec![0u8; Self::CHUNK];
        let mut copied = 0u64;
        // Never more than one byte past `expected`: a file that keeps
        // growing is refused, not copied without end.
        while copied <= expected {
            let n = match file.read_at(&mut buffer, copied) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            each(&buffer[..n]);
            copy.write_all(&buffer[..n])?;
            copied += n as u64;
        }
        if copied != expected {
            return Err(std::io::Error::other(format!(
                "the file changed while it was read ({copied} bytes or more, not {expected})"
            )));
        }
        rustix::fs::fcntl_add_seals(
            &copy,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
        )?;
        Ok(SealedCopy(copy))
    }

    /// A path that opens the copy (its `/proc/self/fd` entry).
    pub(crate) fn path(&self) -> std::path::PathBuf {
        use std::os::fd::AsRawFd;
        std::path::PathBuf::from(format!("/proc/self/fd/{}", self.0.as_raw_fd()))
    }

    /// The copy's bytes, read back.
    pub(crate) fn bytes(&self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(self.0.metadata()?.len()).map_err(std::io::Error::other)?;
        let mut bytes = vec![0u8; len];
        self.0.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_whole_file_and_keeps_its_mode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "old").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        }
        write_atomically(&path, b"new").expect("atomic write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("list").count(),
            1,
            "a temp file was left"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_private_dir_that_is_a_symlink_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, dir.path().join("link")).expect("symlink");
        let err = private_dir(&dir.path().join("link")).expect_err("refused");
        assert!(err.contains("symlink"), "{err}");
        private_dir(&real).expect("the real one is fine");
    }

    #[cfg(unix)]
    #[test]
    fn a_private_dir_owned_by_another_user_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let me = rustix::process::geteuid().as_raw();
        let other = if me == 0 { 65534 } else { 0 };
        // Only root can give a folder away; otherwise check the message
        // on a folder root owns.
        let target = if me == 0 {
            std::os::unix::fs::chown(&theirs, Some(other), None).expect("chown");
            theirs
        } else {
            std::path::PathBuf::from("/root")
        };
        if let Err(err) = private_dir(&target) {
            assert!(err.contains("belongs to user"), "{err}");
        } else {
            panic!("a folder of user {other} was accepted");
        }
    }

    #[cfg(unix)]
    #[test]
    fn nofollow_reads_refuse_symlinks_and_private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("key");
        create_private(&key, b"k").expect("create");
        let mode = std::fs::metadata(&key).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(create_private(&key, b"again").is_err(), "never replaced");
        std::os::unix::fs::symlink(&key, dir.path().join("link")).expect("symlink");
        assert!(read_nofollow(&dir.path().join("link")).is_err());
        assert_eq!(read_nofollow(&key).expect("read"), b"k");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_sealed_copy_holds_the_bytes_and_cannot_be_written_grown_or_shrunk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("artifact");
        std::fs::write(&path, b"compiled code").expect("write");
        let file = std::fs::File::open(&path).expect("open");
        let mut seen = Vec::new();
        let copy = SealedCopy::of(&file, 13, |chunk| seen.extend_from_slice(chunk)).expect("copy");
        assert_eq!(seen, b"compiled code");
        assert_eq!(copy.bytes().expect("bytes"), b"compiled code");
        // Even opened for writing again (as another process of this user
        // could, through `/proc`), it refuses every change.
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .open(copy.path())
            .expect("open the copy for writing");
        assert!(writer.write_all(b"planted").is_err(), "written");
        assert!(writer.set_len(4).is_err(), "shrunk");
        assert!(writer.set_len(64).is_err(), "grown");
        assert_eq!(copy.bytes().expect("bytes"), b"compiled code");
        // A file that is not the length it was said to be is refused.
        let file = std::fs::File::open(&path).expect("open");
        assert!(SealedCopy::of(&file, 12, |_| {}).is_err());
        assert!(SealedCopy::of(&file, 14, |_| {}).is_err());
    }
}
