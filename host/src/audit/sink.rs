//! Where audit records go: the [`AuditSink`] trait, and the file and
//! stderr sinks built in.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where audit records go. Implement it to ship records to a log pipeline,
/// OpenTelemetry or a database; [`FileSink`] and [`StderrSink`] are built in.
///
/// The host calls [`write_line`](AuditSink::write_line) with one record at a
/// time, in chain order (it holds a lock meanwhile), and does not return
/// the call's result until it succeeded. Keep it quick: buffer and ship in
/// the background if the destination is remote, accepting that buffered
/// records can be lost in a crash.
pub trait AuditSink: Send + Sync + 'static {
    /// Stores one record: a line of JSON without its trailing newline.
    ///
    /// # Errors
    ///
    /// Any failure; the host then fails the call with
    /// [`Error::Audit`](crate::Error::Audit).
    fn write_line(&self, line: &str) -> std::io::Result<()>;

    /// Pushes buffered records to stable storage. Called when the host is
    /// dropped; the default does nothing.
    ///
    /// # Errors
    ///
    /// Any failure (logged; nothing else can be done at that point).
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends records to a JSON Lines file, one `write(2)` per record
/// (`O_APPEND`, so several processes may share the file), optionally
/// followed by an fsync.
#[derive(Debug)]
pub struct FileSink {
    file: std::fs::File,
    path: PathBuf,
    fsync: bool,
}

impl FileSink {
    /// Opens (creating if needed) `path` for appending.
    ///
    /// # Errors
    ///
    /// The I/O error of opening the file.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<FileSink> {
        let path = path.as_ref();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(FileSink {
            file,
            path: path.to_path_buf(),
            fsync: false,
        })
    }

    /// Whether to fsync after every record (default `false`).
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditSink for FileSink {
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        (&self.file).write_all(&bytes)?;
        if self.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// Writes records to the host process's stderr, one line each.
#[derive(Debug, Default, Clone, Copy)]
pub struct StderrSink;

impl AuditSink for StderrSink {
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        let mut err = std::io::stderr().lock();
        err.write_all(line.as_bytes())?;
        err.write_all(b"\n")
    }
}
