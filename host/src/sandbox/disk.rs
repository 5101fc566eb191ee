//! The disk budget of one call: bytes written and entries created through
//! the plugin's read-write grants (`limits.disk_write`, `limits.disk_files`).
//!
//! wasmtime-wasi 48 has no hook for this (its `FsPerms` only says yes or
//! no), so the linker shadows the `wasi:filesystem/types` functions that
//! write or create ([`add_to_linker`]): on a descriptor of a read-write
//! grant, each takes its share of the call's [`DiskBudget`] first, then
//! runs wasmtime-wasi's own implementation, and gives the share back if
//! that failed. Descriptors of read-only grants are not counted at all
//! (wasmtime-wasi refuses their writes as before). A write-via-stream or append-via-stream gets wasmtime-wasi's
//! own stream, wrapped in place in the resource table by a
//! [`CountingStream`], so every `wasi:io/streams` write to a file (`write`,
//! `blocking-write-and-flush`, `write-zeroes`, `splice`) is counted without
//! shadowing `wasi:io` itself. Past the budget the write does not happen
//! and the call traps; the sandbox reports it as the `disk` limit from the
//! budget's own record, never from message text.
//!
//! What counts: every byte handed to a write (an overwrite counts again),
//! the growth of a file by `set-size`, and one entry for each `open-at`
//! with `create`, `create-directory-at`, `symlink-at` and `link-at` (an
//! `open-at` with `create` of a file that already exists counts too: the
//! host does not look first). Cost: two atomic operations per write, and
//! one `stat` per `set-size`.

use super::StoreData;
use crate::error::Limit;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, HostDescriptor as _, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{FsError, FsResult};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{DynOutputStream, OutputStream, StreamError, StreamResult};

/// The instance name wasmtime-wasi 48 links `wasi:filesystem/types` under
/// (any `0.2.x` import resolves to it).
const TYPES: &str = "wasi:filesystem/types@0.2.12";

/// What one call may still write and create.
#[derive(Debug)]
pub(crate) struct DiskBudget {
    max_bytes: u64,
    max_files: u64,
    bytes: AtomicU64,
    files: AtomicU64,
    /// Why the budget refused, the first time it did.
    exceeded: OnceLock<String>,
}

impl DiskBudget {
    pub(crate) fn new(max_bytes: u64, max_files: u64) -> DiskBudget {
        DiskBudget {
            max_bytes,
            max_files,
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            exceeded: OnceLock::new(),
        }
    }

    /// The limit and what was refused, if the budget refused something.
    pub(crate) fn exceeded(&self) -> Option<(Limit, String)> {
        self.exceeded.get().map(|why| (Limit::Disk, why.clone()))
    }

    /// Bytes written and entries created so far.
    #[cfg(test)]
    fn used(&self) -> (u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.files.load(Ordering::Relaxed),
        )
    }

    /// Takes `n` bytes, or records the refusal and returns the trap.
    fn take_bytes(&self, n: u64) -> Result<(), wasmtime::Error> {
        take(&self.bytes, n, self.max_bytes).map_err(|used| {
            self.refuse(format!(
                "the plugin tried to write {} bytes through its read-write grants in one call; the limit is {} bytes",
                used.saturating_add(n),
                self.max_bytes
            ))
        })
    }

    fn give_back_bytes(&self, n: u64) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// Takes one created entry, or records the refusal and returns the
    /// trap.
    fn take_file(&self) -> Result<(), wasmtime::Error> {
        take(&self.files, 1, self.max_files).map_err(|_| {
            self.refuse(format!(
                "the plugin tried to create more than {} files, directories or links through its read-write grants in one call",
                self.max_files
            ))
        })
    }

    fn give_back_file(&self) {
        self.files.fetch_sub(1, Ordering::Relaxed);
    }

    fn refuse(&self, why: String) -> wasmtime::Error {
        let why = self.exceeded.get_or_init(|| why);
        wasmtime::format_err!("disk limit exceeded: {why}")
    }
}

/// Adds `n` to `counter` unless that passes `max`; `Err(used)` otherwise.
fn take(counter: &AtomicU64, n: u64, max: u64) -> Result<(), u64> {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            used.checked_add(n).filter(|total| *total <= max)
        })
        .map(|_| ())
}

/// A file's output stream, counting every byte against the call's budget
/// before wasmtime-wasi's own stream writes it.
struct CountingStream {
    inner: DynOutputStream,
    budget: Arc<DiskBudget>,
}

impl CountingStream {
    fn take(&self, n: usize) -> StreamResult<()> {
        self.budget.take_bytes(n as u64).map_err(StreamError::Trap)
    }

    /// Gives `n` back when the write failed at once.
    fn settle<T>(&self, n: usize, result: StreamResult<T>) -> StreamResult<T> {
        if result.is_err() {
            self.budget.give_back_bytes(n as u64);
        }
        result
    }
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for CountingStream {
    async fn ready(&mut self) {
        self.inner.ready().await;
    }
}

#[wasmtime_wasi_io::async_trait]
impl OutputStream for CountingStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let n = bytes.len();
        self.take(n)?;
        let result = self.inner.write(bytes);
        self.settle(n, result)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        let n = bytes.len();
        self.take(n)?;
        let result = self.inner.blocking_write_and_flush(bytes).await;
        self.settle(n, result)
    }

    fn write_zeroes(&mut self, n: usize) -> StreamResult<()> {
        self.take(n)?;
        let result = self.inner.write_zeroes(n);
        self.settle(n, result)
    }

    async fn write_ready(&mut self) -> StreamResult<usize> {
        self.inner.write_ready().await
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await;
    }
}

/// wasmtime-wasi's result as the guest sees it: its error code, or the
/// trap.
fn lower<T>(result: FsResult<T>) -> wasmtime::Result<(Result<T, ErrorCode>,)> {
    match result {
        Ok(value) => Ok((Ok(value),)),
        Err(e) => e.downcast().map(|code| (Err(code),)),
    }
}

/// Wraps the output stream `result` holds in a [`CountingStream`], in
/// place in the resource table. (wasmtime-wasi makes a stream only for a
/// descriptor that may write.)
fn count_stream(
    data: &mut StoreData,
    result: FsResult<Resource<DynOutputStream>>,
) -> FsResult<Resource<DynOutputStream>> {
    let stream = result?;
    let budget = Arc::clone(&data.disk);
    let table = data.filesystem().table;
    let slot = table.get_mut(&stream).map_err(FsError::trap)?;
    let inner = std::mem::replace(slot, Box::new(Closed));
    *slot = Box::new(CountingStream { inner, budget });
    Ok(stream)
}

/// Stands in for a stream for the moment it is being wrapped.
struct Closed;

#[wasmtime_wasi_io::async_trait]
impl Pollable for Closed {
    async fn ready(&mut self) {}
}

impl OutputStream for Closed {
    fn write(&mut self, _: Bytes) -> StreamResult<()> {
        Err(StreamError::Closed)
    }
    fn flush(&mut self) -> StreamResult<()> {
        Err(StreamError::Closed)
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Err(StreamError::Closed)
    }
}

/// Whether `fd` is a descriptor under a read-write grant: only those are
/// counted (wasmtime-wasi refuses every write through the others itself,
/// so a read-only grant behaves exactly as without a budget).
fn read_write(data: &mut StoreData, fd: &Resource<Descriptor>) -> bool {
    match data.filesystem().table.get(fd) {
        Ok(Descriptor::Dir(dir)) => !dir.perms.write_not_permitted(),
        Ok(Descriptor::File(file)) => !file.perms.write_not_permitted(),
        // wasmtime-wasi traps on a bad handle itself.
        Err(_) => false,
    }
}

/// What an operation takes from the budget.
#[derive(Clone, Copy)]
enum Share {
    Bytes(u64),
    Entry,
    Nothing,
}

impl Share {
    /// Takes the share from `budget` (or returns the trap), for an
    /// operation on `fd`; nothing for a descriptor of a read-only grant.
    fn take(self, data: &mut StoreData, fd: &Resource<Descriptor>) -> wasmtime::Result<Share> {
        if !read_write(data, fd) {
            return Ok(Share::Nothing);
        }
        match self {
            Share::Bytes(n) => data.disk.take_bytes(n)?,
            Share::Entry => data.disk.take_file()?,
            Share::Nothing => {}
        }
        Ok(self)
    }

    /// Gives the share back when wasmtime-wasi refused the operation.
    fn settle<T>(self, budget: &DiskBudget, result: &FsResult<T>) {
        if result.is_ok() {
            return;
        }
        match self {
            Share::Bytes(n) => budget.give_back_bytes(n),
            Share::Entry => budget.give_back_file(),
            Share::Nothing => {}
        }
    }
}

/// Shadows the writing and creating functions of `wasi:filesystem/types`
/// (already linked) with counting ones that delegate to wasmtime-wasi.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store, (fd, buf, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                let data = store.data_mut();
                let share = Share::Bytes(buf.len() as u64).take(data, &fd)?;
                let budget = Arc::clone(&data.disk);
                let result = data.filesystem().write(fd, buf, offset).await;
                share.settle(&budget, &result);
                lower(result)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store, (fd, size): (Resource<Descriptor>, u64)| {
            Box::new(async move {
                let data = store.data_mut();
                let before = match data.filesystem().stat(Resource::new_borrow(fd.rep())).await {
                    Ok(stat) => stat.size,
                    Err(e) => return lower(Err(e)),
                };
                let share = Share::Bytes(size.saturating_sub(before)).take(data, &fd)?;
                let budget = Arc::clone(&data.disk);
                let result = data.filesystem().set_size(fd, size).await;
                share.settle(&budget, &result);
                lower(result)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store,
         (fd, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let data = store.data_mut();
                let share = if oflags.contains(OpenFlags::CREATE) {
                    Share::Entry.take(data, &fd)?
                } else {
                    Share::Nothing
                };
                let budget = Arc::clone(&data.disk);
                let result = data
                    .filesystem()
                    .open_at(fd, path_flags, path, oflags, flags)
                    .await;
                share.settle(&budget, &result);
                lower(result)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.create-directory-at",
        |mut store, (fd, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let data = store.data_mut();
                let share = Share::Entry.take(data, &fd)?;
                let budget = Arc::clone(&data.disk);
                let result = data.filesystem().create_directory_at(fd, path).await;
                share.settle(&budget, &result);
                lower(result)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store, (fd, old, new): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                let data = store.data_mut();
                let share = Share::Entry.take(data, &fd)?;
                let budget = Arc::clone(&data.disk);
                let result = data.filesystem().symlink_at(fd, old, new).await;
                share.settle(&budget, &result);
                lower(result)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.link-at",
        |mut store,
         (fd, flags, old, new_fd, new): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| {
            Box::new(async move {
                let data = store.data_mut();
                // The link is made in `new_fd`'s directory.
                let share = Share::Entry.take(data, &new_fd)?;
                let budget = Arc::clone(&data.disk);
                let result = data.filesystem().link_at(fd, flags, old, new_fd, new).await;
                share.settle(&budget, &result);
                lower(result)
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store, (fd, offset): (Resource<Descriptor>, u64)| {
            let data = store.data_mut();
            let result = data.filesystem().write_via_stream(fd, offset);
            lower(count_stream(data, result))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store, (fd,): (Resource<Descriptor>,)| {
            let data = store.data_mut();
            let result = data.filesystem().append_via_stream(fd);
            lower(count_stream(data, result))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_past_its_limit_and_records_why() {
        let budget = DiskBudget::new(100, 1);
        budget.take_bytes(60).expect("fits");
        assert!(budget.take_bytes(41).is_err());
        assert_eq!(budget.used().0, 60, "a refused write takes nothing");
        budget.take_bytes(40).expect("exactly the limit fits");
        let (limit, why) = budget.exceeded().expect("recorded");
        assert_eq!(limit, Limit::Disk);
        assert!(why.contains("101 bytes"), "{why}");
        budget.take_file().expect("one file");
        assert!(budget.take_file().is_err());
        // The first refusal is the one reported.
        assert!(budget.exceeded().expect("recorded").1.contains("bytes"));
    }

    #[test]
    fn a_refund_gives_the_share_back() {
        let budget = DiskBudget::new(10, 0);
        budget.take_bytes(10).expect("fits");
        budget.give_back_bytes(10);
        budget.take_bytes(10).expect("fits again");
        assert!(budget.take_file().is_err(), "a budget of 0 files");
    }
}
