//! Where audit records go: the [`AuditSink`] trait, and the file and
//! stderr sinks built in. The file sink is shared by every process that
//! appends to it: its records continue one chain, taken under a lock.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Where audit records go. Implement it to ship records to a log pipeline,
/// OpenTelemetry or a database; [`FileSink`] and [`StderrSink`] are built in.
///
/// Each sink has one writer thread in the host, which calls
/// [`write_batch`](AuditSink::write_batch) with the records queued since its
/// last batch, in chain order; no call returns before the batch holding
/// its records succeeded. Keep it quick: buffer and ship in the background
/// if the destination is remote, accepting that buffered records can be
/// lost in a crash.
pub trait AuditSink: Send + Sync + 'static {
    /// Stores one record: a line of JSON without its trailing newline.
    ///
    /// # Errors
    ///
    /// Any failure; the host then fails the calls whose records were in
    /// the batch with [`Error::Audit`](crate::Error::Audit).
    fn write_line(&self, line: &str) -> std::io::Result<()>;

    /// Stores several records at once (group commit); the default writes
    /// them one by one with [`write_line`](AuditSink::write_line).
    ///
    /// # Errors
    ///
    /// As [`write_line`](AuditSink::write_line): the whole batch fails.
    fn write_batch(&self, lines: &[String]) -> std::io::Result<()> {
        lines.iter().try_for_each(|line| self.write_line(line))
    }

    /// For a sink that other hosts append to as well (a file shared by
    /// several processes): locks it until [`unlock`](AuditSink::unlock),
    /// and returns what it already ends with, so this host's records
    /// continue that chain. The default, [`SinkTail::Own`], says the sink
    /// is this host's alone: the host continues its own chain.
    ///
    /// # Errors
    ///
    /// Any failure to lock or read; the batch fails.
    fn lock_tail(&self) -> std::io::Result<SinkTail> {
        Ok(SinkTail::Own)
    }

    /// Releases the lock [`lock_tail`](AuditSink::lock_tail) took; called
    /// after every batch, whether it was written or not.
    fn unlock(&self) {}

    /// Whether a record may be written on the calling thread (an async
    /// runtime's worker) when no other batch is in progress: `true` only
    /// for a sink whose writes are short local system calls, such as
    /// [`FileSink`] without fsync. The default, `false`, has the sink's
    /// writer thread do every write (a sink that may block for long: a
    /// network, an fsync).
    fn writes_inline(&self) -> bool {
        false
    }

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

/// What a sink already holds at its end ([`AuditSink::lock_tail`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkTail {
    /// The sink is this host's alone: continue the host's own chain.
    Own,
    /// The sink is shared and holds no record yet: start a new chain.
    Empty,
    /// The sink is shared and its last complete record is this line
    /// (without its newline): continue its chain.
    Last(Vec<u8>),
}

/// Bytes read back from the end of a file at a time, looking for the start
/// of its last line.
const TAIL_CHUNK: u64 = 8 * 1024;

/// Appends records to a JSON Lines file, one `write(2)` per batch
/// (`O_APPEND`), optionally followed by one fsync per batch (group
/// commit). Several processes may share the file: each batch is written
/// under an exclusive lock on it (`flock`), continuing the file's chain.
///
/// The file is opened without following a symlink (`O_NOFOLLOW`) and
/// created readable by its owner only (`0600`).
#[derive(Debug)]
pub struct FileSink {
    file: File,
    path: PathBuf,
    fsync: bool,
    /// Where this sink's last batch ended ([`NOT_YET`] before the first):
    /// a file still that long under the lock holds nothing written since,
    /// so the host's own chain continues without reading the tail back.
    end: AtomicU64,
    /// Whether this sink holds the file's lock (between
    /// [`AuditSink::lock_tail`] and [`AuditSink::unlock`]): only a batch
    /// written under it may set `end`.
    locked: AtomicBool,
    /// The file's length as read under the lock: where the next batch
    /// appended under it starts (so its end needs no second `lseek`).
    at: AtomicU64,
}

/// [`FileSink::end`] before the sink has written anything.
const NOT_YET: u64 = u64::MAX;

impl FileSink {
    /// Opens (creating if needed, mode `0600`) `path` for appending. A
    /// symlink at `path` is refused, whatever it points at.
    ///
    /// # Errors
    ///
    /// The I/O error of opening the file (`ELOOP` for a symlink).
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<FileSink> {
        let path = path.as_ref();
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true).read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let file = options.open(path).map_err(|e| {
            if is_symlink(path) {
                std::io::Error::new(
                    e.kind(),
                    format!("it is a symlink, which an audit log may not be ({e})"),
                )
            } else {
                e
            }
        })?;
        Ok(FileSink {
            file,
            path: path.to_path_buf(),
            fsync: false,
            end: AtomicU64::new(NOT_YET),
            locked: AtomicBool::new(false),
            at: AtomicU64::new(0),
        })
    }

    /// Whether to fsync after every batch of records (default `false`).
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last complete line of the file; a torn last line (an
    /// interrupted write) is ended with a newline first, so the next record
    /// starts on a line of its own and chains to the complete line before.
    fn tail(&self) -> std::io::Result<SinkTail> {
        let mut file = &self.file;
        let len = file.seek(SeekFrom::End(0))?;
        self.at.store(len, Ordering::Relaxed);
        if len == self.end.load(Ordering::Relaxed) {
            // Nobody appended since this sink's last batch.
            return Ok(SinkTail::Own);
        }
        if len == 0 {
            return Ok(SinkTail::Empty);
        }
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] == b'\n' {
            return Ok(SinkTail::Last(self.line_ending_at(len - 1)?.1));
        }
        let (start, _) = self.line_ending_at(len)?;
        file.write_all(b"\n")?;
        self.at.store(len + 1, Ordering::Relaxed);
        if start == 0 {
            return Ok(SinkTail::Empty);
        }
        Ok(SinkTail::Last(self.line_ending_at(start - 1)?.1))
    }

    /// The line that ends at byte `end` (a newline, or the end of the
    /// file): where it starts, and its bytes.
    fn line_ending_at(&self, end: u64) -> std::io::Result<(u64, Vec<u8>)> {
        let mut file = &self.file;
        let mut line: Vec<u8> = Vec::new();
        let mut start = end;
        while start > 0 {
            let from = start.saturating_sub(TAIL_CHUNK);
            let mut chunk = vec![0u8; usize::try_from(start - from).unwrap_or(0)];
            file.seek(SeekFrom::Start(from))?;
            file.read_exact(&mut chunk)?;
            if let Some(nl) = chunk.iter().rposition(|&b| b == b'\n') {
                chunk.drain(..=nl);
                start = from + nl as u64 + 1;
                chunk.extend_from_slice(&line);
                return Ok((start, chunk));
            }
            chunk.extend_from_slice(&line);
            line = chunk;
            start = from;
        }
        Ok((0, line))
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

impl AuditSink for FileSink {
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        self.write_batch(std::slice::from_ref(&line.to_string()))
    }

    fn write_batch(&self, lines: &[String]) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        self.end.store(NOT_YET, Ordering::Relaxed);
        (&self.file).write_all(&bytes)?;
        if self.fsync {
            self.file.sync_data()?;
        }
        if self.locked.load(Ordering::Relaxed) {
            // Nobody else appends while the lock is held: this batch,
            // appended whole where the file ended, ends it.
            let end = self.at.load(Ordering::Relaxed) + bytes.len() as u64;
            self.at.store(end, Ordering::Relaxed);
            self.end.store(end, Ordering::Relaxed);
        }
        Ok(())
    }

    fn lock_tail(&self) -> std::io::Result<SinkTail> {
        self.file.lock()?;
        self.locked.store(true, Ordering::Relaxed);
        self.tail().inspect_err(|_| self.unlock())
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Relaxed);
        if let Err(e) = self.file.unlock() {
            tracing::warn!(error = %e, path = %self.path.display(), "failed to unlock the audit log");
        }
    }

    fn writes_inline(&self) -> bool {
        !self.fsync
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
