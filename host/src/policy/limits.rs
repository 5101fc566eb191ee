//! Limits of one call: the configurable ones ([`Limits`], with their
//! defaults and ceilings) and the fixed [`caps`].

use crate::manifest::LimitsEntry;
use std::time::Duration;

/// Resource limits of one call. Every field has a safe default (see
/// [`Limits::default`]) and a hard ceiling the manifest cannot exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel units, about one per WebAssembly instruction. Default
    /// 1,000,000,000 (roughly a second of CPU); ceiling 10^12.
    pub fuel: u64,
    /// Total bytes of all the instance's linear memories. Default 64 MiB;
    /// range 1 MiB to 4 GiB.
    pub memory: u64,
    /// Wall-clock time of one call, including time blocked in host calls.
    /// Default 5 s; range 1 ms to 10 min.
    pub timeout: Duration,
    /// Bytes of tool output; a larger output is refused, never truncated.
    /// Default 1 MiB; ceiling 64 MiB.
    pub output: u64,
    /// Bytes kept of each of stdout and stderr; the excess is counted and
    /// discarded. Default 64 KiB; ceiling 16 MiB.
    pub stdio: u64,
    /// HTTP requests one call may make (allowed or not). Default 16; range
    /// 0 to 1,000.
    pub http_requests: u32,
    /// Bytes of one HTTP response body, enforced while it streams and again
    /// after decompression. Default 1 MiB; range 1 B to 64 MiB.
    pub http_response: u64,
    /// Bytes of one HTTP request body. Default 1 MiB; ceiling 16 MiB.
    pub http_request_body: u64,
    /// Time of one HTTP request, from name resolution to the last body
    /// byte; never past the call's own deadline. Default 10 s; range 1 ms
    /// to 10 min.
    pub http_timeout: Duration,
    /// Time to establish one TCP connection. Default 3 s; range 1 ms to
    /// 1 min.
    pub http_connect_timeout: Duration,
    /// Bytes one call may write through read-write grants (every byte
    /// handed to a write, and a file's growth by `set-size`). Default
    /// 64 MiB, as much as the default `memory` limit lets a tool hold, far
    /// more than an edited document or a generated report; range 0 to
    /// 16 GiB.
    pub disk_write: u64,
    /// Files, directories and links one call may create through read-write
    /// grants (each open with `create` counts). Default 1,000: a scaffold
    /// or an unpacked archive fits, a loop exhausting the disk's inodes
    /// does not; range 0 to 1,000,000.
    pub disk_files: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 1_000_000_000,
            memory: 64 << 20,
            timeout: Duration::from_secs(5),
            output: 1 << 20,
            stdio: 64 << 10,
            http_requests: 16,
            http_response: 1 << 20,
            http_request_body: 1 << 20,
            http_timeout: Duration::from_secs(10),
            http_connect_timeout: Duration::from_secs(3),
            disk_write: 64 << 20,
            disk_files: 1_000,
        }
    }
}

impl Limits {
    /// The most bytes the plugin may hand the host in one piece: the
    /// call's result, or the arguments of one host call (a request with
    /// its body, a log message, a write). The largest of `output` and
    /// `http_request_body`, plus [`caps::TRANSFER_SLACK`] for what comes
    /// with them (URL, headers, list bookkeeping). The sandbox gives this
    /// to wasmtime, which checks each length against it *before* copying
    /// out of guest memory, so a plugin cannot make the host allocate
    /// its whole linear memory to find out the output is too large.
    pub(crate) fn largest_transfer(&self) -> u64 {
        self.output.max(self.http_request_body) + caps::TRANSFER_SLACK
    }
}

/// Fixed caps per call that are not configurable: they bound resources that
/// no tool legitimately needs many of.
pub mod caps {
    /// Linear memories per instance (a Rust component uses 2-3).
    pub const MEMORIES: usize = 32;
    /// Tables per instance.
    pub const TABLES: usize = 64;
    /// Elements per table.
    pub const TABLE_ELEMENTS: usize = 100_000;
    /// Core and component instances per store.
    pub const INSTANCES: usize = 64;
    /// Live resource handles (open files, directory streams, pollables).
    pub const RESOURCES: usize = 1_024;
    /// Log messages kept per call; more are counted and dropped.
    pub const LOG_MESSAGES: usize = 256;
    /// Bytes kept of one log message.
    pub const LOG_MESSAGE_BYTES: usize = 4_096;
    /// Headers one HTTP request may set.
    pub const HTTP_HEADERS: usize = 64;
    /// Total bytes of the names and values of one request's headers.
    pub const HTTP_HEADER_BYTES: usize = 16 * 1024;
    /// Requests of one call in flight at once through the `http`
    /// interface: its `send` blocks the guest until the response is
    /// complete, so there is never more than one.
    pub const HTTP_IN_FLIGHT: usize = 1;

    /// What one transfer from the plugin to the host may carry beyond
    /// its output or request body (see `Limits::largest_transfer`): the
    /// URL, method and headers of a request, bounded by the header caps
    /// above, and the list bookkeeping wasmtime counts with them.
    pub const TRANSFER_SLACK: u64 = 64 * 1024;

    /// Why a request with `count` headers of `bytes` bytes of names and
    /// values is over [`HTTP_HEADERS`] or [`HTTP_HEADER_BYTES`], if it is.
    pub(crate) fn header_excess(count: usize, bytes: usize) -> Option<String> {
        if count > HTTP_HEADERS {
            Some(format!(
                "the request has {count} headers; the limit is {HTTP_HEADERS}"
            ))
        } else if bytes > HTTP_HEADER_BYTES {
            Some(format!(
                "the request headers are {bytes} bytes; the limit is {HTTP_HEADER_BYTES} bytes"
            ))
        } else {
            None
        }
    }
}

/// `Ok` if `value` lies in `range`, else the message: ``limits.NAME` must
/// be between BOUNDS, got `VALUE``.
fn within<T: PartialOrd + Copy>(
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    bounds: &str,
    show: impl Fn(T) -> String,
) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "`limits.{name}` must be between {bounds}, got `{}`",
            show(value)
        ))
    }
}

/// The limits an entry sets, each default filled in and each checked
/// against its range.
pub(crate) fn validate_limits(entry: &LimitsEntry) -> Result<Limits, String> {
    let d = Limits::default();
    let limits = Limits {
        fuel: entry.fuel.unwrap_or(d.fuel),
        memory: entry.memory.map_or(d.memory, |b| b.0),
        timeout: entry.timeout.map_or(d.timeout, |t| t.0),
        output: entry.output.map_or(d.output, |b| b.0),
        stdio: entry.stdio.map_or(d.stdio, |b| b.0),
        http_requests: entry.http_requests.unwrap_or(d.http_requests),
        http_response: entry.http_response.map_or(d.http_response, |b| b.0),
        http_request_body: entry.http_request_body.map_or(d.http_request_body, |b| b.0),
        http_timeout: entry.http_timeout.map_or(d.http_timeout, |t| t.0),
        http_connect_timeout: entry
            .http_connect_timeout
            .map_or(d.http_connect_timeout, |t| t.0),
        disk_write: entry.disk_write.map_or(d.disk_write, |b| b.0),
        disk_files: entry.disk_files.unwrap_or(d.disk_files),
    };
    let bytes = |n: u64| format!("{n} bytes");
    let time = |t: Duration| format!("{t:?}");
    let ms = Duration::from_millis(1);
    within(
        "fuel",
        limits.fuel,
        1..=1_000_000_000_000,
        "1 and 10^12",
        |n: u64| n.to_string(),
    )?;
    within(
        "memory",
        limits.memory,
        (1 << 20)..=(4 << 30),
        "1 MiB and 4 GiB",
        bytes,
    )?;
    within(
        "timeout",
        limits.timeout,
        ms..=Duration::from_secs(600),
        "1ms and 10m",
        time,
    )?;
    within(
        "output",
        limits.output,
        1..=(64 << 20),
        "1 byte and 64 MiB",
        bytes,
    )?;
    within("stdio", limits.stdio, 0..=(16 << 20), "0 and 16 MiB", bytes)?;
    within(
        "http_requests",
        limits.http_requests,
        0..=1_000,
        "0 and 1000",
        |n: u32| n.to_string(),
    )?;
    within(
        "http_response",
        limits.http_response,
        1..=(64 << 20),
        "1 byte and 64 MiB",
        bytes,
    )?;
    within(
        "http_request_body",
        limits.http_request_body,
        0..=(16 << 20),
        "0 and 16 MiB",
        bytes,
    )?;
    within(
        "http_timeout",
        limits.http_timeout,
        ms..=Duration::from_secs(600),
        "1ms and 10m",
        time,
    )?;
    within(
        "http_connect_timeout",
        limits.http_connect_timeout,
        ms..=Duration::from_secs(60),
        "1ms and 1m",
        time,
    )?;
    within(
        "disk_write",
        limits.disk_write,
        0..=(16 << 30),
        "0 and 16 GiB",
        bytes,
    )?;
    within(
        "disk_files",
        limits.disk_files,
        0..=1_000_000,
        "0 and 1000000",
        |n: u32| n.to_string(),
    )?;
    Ok(limits)
}
