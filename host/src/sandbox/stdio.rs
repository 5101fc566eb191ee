//! Capped in-memory sinks for a plugin's stdout and stderr.
//!
//! The plugin's output never reaches the host's own stdout or stderr (where
//! it could corrupt a protocol stream or forge diagnostics). The first
//! `cap` bytes are kept; the rest is counted and discarded. A flood is not an
//! error by itself: fuel and time bound how long a plugin can keep writing.
//!
//! Secret values are scrubbed as the bytes arrive, before the cap, by a
//! streaming scrubber (a value split across two writes is still caught);
//! the counts are of the scrubbed stream.

use crate::secrets::{Scrubber, StreamScrubber};
use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// What a plugin wrote to one stream during a call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The first bytes written, up to the `stdio` limit.
    pub kept: Vec<u8>,
    /// How many bytes were written beyond the limit and discarded.
    pub discarded: u64,
}

impl Captured {
    /// Total bytes the plugin wrote (counting what scrubbing replaced as
    /// its replacement).
    pub fn total(&self) -> u64 {
        self.kept.len() as u64 + self.discarded
    }

    /// Scrubs what was kept once more, with a scrubber that learned values
    /// during the call.
    pub(crate) fn rescrub(&mut self, scrubber: &Scrubber) {
        if let std::borrow::Cow::Owned(clean) = scrubber.scrub_bytes(&self.kept) {
            self.kept = clean;
        }
    }
}

/// One capped sink, shared by every handle the guest opens on the stream.
#[derive(Clone)]
pub(crate) struct CappedPipe {
    inner: Arc<Mutex<Pipe>>,
}

struct Pipe {
    captured: Captured,
    cap: usize,
    /// `None` once taken.
    scrubber: Option<StreamScrubber>,
}

impl Pipe {
    fn keep(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.captured.kept.len());
        let keep = room.min(bytes.len());
        self.captured.kept.extend_from_slice(&bytes[..keep]);
        self.captured.discarded += (bytes.len() - keep) as u64;
    }
}

impl CappedPipe {
    pub(crate) fn new(cap: u64, scrubber: &Arc<Scrubber>) -> Self {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        CappedPipe {
            inner: Arc::new(Mutex::new(Pipe {
                captured: Captured::default(),
                cap,
                scrubber: Some(scrubber.stream()),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pipe> {
        // A poisoned lock only means another handle panicked mid-write; the
        // counters are still meaningful.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, bytes: &[u8]) {
        let mut pipe = self.lock();
        let clean = match &mut pipe.scrubber {
            Some(scrubber) => scrubber.push(bytes),
            // Written after the call ended: counted, never kept.
            None => {
                pipe.captured.discarded += bytes.len() as u64;
                return;
            }
        };
        pipe.keep(&clean);
    }

    /// What was written, scrubbed, including the bytes the scrubber held
    /// back.
    pub(crate) fn take(&self) -> Captured {
        let mut pipe = self.lock();
        if let Some(scrubber) = pipe.scrubber.take() {
            let rest = scrubber.finish();
            pipe.keep(&rest);
        }
        std::mem::take(&mut pipe.captured)
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Accepts up to this many bytes per write; the guest loops for more.
const WRITE_BUDGET: usize = 64 * 1024;

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Arc<Scrubber> {
        Arc::new(Scrubber::default())
    }

    #[test]
    fn excess_is_counted_and_discarded() {
        let pipe = CappedPipe::new(4, &none());
        pipe.push(b"abc");
        pipe.push(b"defgh");
        let captured = pipe.take();
        assert_eq!(captured.kept, b"abcd");
        assert_eq!(captured.discarded, 4);
        assert_eq!(captured.total(), 8);
    }

    #[test]
    fn zero_cap_keeps_nothing() {
        let pipe = CappedPipe::new(0, &none());
        pipe.push(b"abc");
        assert_eq!(
            pipe.take(),
            Captured {
                kept: vec![],
                discarded: 3
            }
        );
    }

    #[test]
    fn secrets_are_scrubbed_across_writes_and_at_the_cap() {
        let scrubber = Arc::new(Scrubber::new([(
            "key",
            &crate::Secret::new("0123456789abcdef"),
        )]));
        let pipe = CappedPipe::new(1024, &scrubber);
        pipe.push(b"a 01234567");
        pipe.push(b"89abcdef b");
        assert_eq!(pipe.take().kept, b"a [redacted:key] b");

        // A value that straddles the cap leaves no prefix behind.
        let pipe = CappedPipe::new(8, &scrubber);
        pipe.push(b"xxxx0123456789abcdef");
        let kept = pipe.take().kept;
        assert_eq!(kept, b"xxxx[red");
    }
}
