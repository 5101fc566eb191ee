//! Name resolution, done by the host (never by the plugin). Pluggable so
//! that embedders can use their own resolver and tests can map names to
//! loopback ports. The system resolver runs each lookup on a thread of its
//! own and bounds how many may be pending (a lookup cannot be cancelled).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use tokio::sync::oneshot;

/// What [`Resolver::resolve`] returns.
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Turns a host name into addresses. Set one with
/// [`HostBuilder::resolver`](crate::HostBuilder::resolver); the default is
/// [`SystemResolver`].
///
/// Every address returned is checked against the blocked ranges before
/// the host connects, and the connection goes to one of exactly those
/// addresses: a resolver cannot widen what a plugin may reach, only narrow
/// or redirect it among checked addresses.
pub trait Resolver: Send + Sync + 'static {
    /// The addresses of `host` (a normalised name, never an IP literal);
    /// `port` is the port the connection will use, for resolvers that map
    /// per service.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a>;
}

/// The system's resolver: `getaddrinfo` on a thread of its own, never on
/// the async threads or tokio's shared blocking pool. Proxy settings from
/// the environment are never consulted.
///
/// A lookup the gate gave up on (its call's deadline passed) cannot be
/// interrupted: its thread runs on until the system resolver answers, and
/// a resolver that never answers would keep it forever. So at most 64
/// lookups run at once in the process; past that, a
/// lookup fails at once with a clear error instead of starting another
/// thread (or taking one that other work needs).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

/// How many system lookups may run at once, finished or abandoned by their
/// caller but still waiting on the system resolver.
const MAX_PENDING_LOOKUPS: usize = 64;

/// The system resolver's pending lookups, process-wide.
static SYSTEM: Lookups = Lookups::new(system_lookup, MAX_PENDING_LOOKUPS);

fn system_lookup(host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
    use std::net::ToSocketAddrs;
    Ok((host, port).to_socket_addrs()?.map(|a| a.ip()).collect())
}

impl Resolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        let answer = SYSTEM.start(host, port);
        Box::pin(async move { answer?.await.map_err(|_| lookup_lost())? })
    }
}

/// A blocking lookup: `getaddrinfo`, or a stand-in in the tests.
type Lookup = fn(&str, u16) -> std::io::Result<Vec<IpAddr>>;

/// Blocking lookups, each on a detached thread, at most `cap` pending.
struct Lookups {
    lookup: Lookup,
    cap: usize,
    pending: AtomicUsize,
}

/// Frees a pending slot when its thread ends, however it ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, AtomicOrdering::AcqRel);
    }
}

impl Lookups {
    const fn new(lookup: Lookup, cap: usize) -> Self {
        Lookups {
            lookup,
            cap,
            pending: AtomicUsize::new(0),
        }
    }

    /// Starts a lookup of `host` on a thread of its own; its answer comes
    /// through the receiver, which the caller may drop (the thread then
    /// finishes on its own and frees its slot).
    fn start(
        &'static self,
        host: &str,
        port: u16,
    ) -> std::io::Result<oneshot::Receiver<std::io::Result<Vec<IpAddr>>>> {
        let taken =
            self.pending
                .fetch_update(AtomicOrdering::AcqRel, AtomicOrdering::Acquire, |n| {
                    (n < self.cap).then_some(n + 1)
                });
        if taken.is_err() {
            return Err(std::io::Error::other(format!(
                "{} name lookups are already waiting on the system resolver; \
                 try again when it answers",
                self.cap
            )));
        }
        let slot = Slot(&self.pending);
        let (send, answer) = oneshot::channel();
        let host = host.to_string();
        std::thread::Builder::new()
            .name("portcullis-resolve".into())
            .spawn(move || {
                let _slot = slot;
                // The caller may have given up: nobody to tell.
                let _ = send.send((self.lookup)(&host, port));
            })
            .map_err(|e| std::io::Error::other(format!("cannot start a name lookup: {e}")))?;
        Ok(answer)
    }

    #[cfg(test)]
    fn pending(&self) -> usize {
        self.pending.load(AtomicOrdering::Acquire)
    }
}

fn lookup_lost() -> std::io::Error {
    std::io::Error::other("the name lookup ended without an answer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};

    /// Closed until a test opens it: [`hanging`] waits on it.
    static GATE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

    /// A system resolver that never answers until [`GATE`] opens.
    fn hanging(_: &str, _: u16) -> std::io::Result<Vec<IpAddr>> {
        let (open, wake) = &GATE;
        let mut open = open.lock().expect("lock");
        while !*open {
            open = wake.wait(open).expect("wait");
        }
        Ok(vec![IpAddr::from([127, 0, 0, 1])])
    }

    static HANGING: Lookups = Lookups::new(hanging, 2);

    #[tokio::test]
    async fn abandoned_lookups_are_capped_and_free_their_slot_when_answered() {
        // Two callers give up on a resolver that hangs: their threads stay.
        drop(HANGING.start("a.test", 80).expect("first"));
        drop(HANGING.start("b.test", 80).expect("second"));
        assert_eq!(HANGING.pending(), 2);
        // The third is refused at once, no thread started.
        let err = HANGING.start("c.test", 80).expect_err("over the cap");
        assert!(
            err.to_string()
                .contains("2 name lookups are already waiting"),
            "{err}"
        );
        assert_eq!(HANGING.pending(), 2);
        // The resolver answers: the threads end and their slots free.
        let (open, wake) = &GATE;
        *open.lock().expect("lock") = true;
        wake.notify_all();
        while HANGING.pending() > 0 {
            std::thread::yield_now();
        }
        let answer = HANGING.start("d.test", 80).expect("a slot is free");
        assert_eq!(
            answer.await.expect("answered").expect("resolved"),
            [IpAddr::from([127, 0, 0, 1])]
        );
    }

    #[tokio::test]
    async fn the_system_resolver_resolves_localhost() {
        let ips = SystemResolver
            .resolve("localhost", 80)
            .await
            .expect("resolves");
        assert!(
            ips.iter().all(IpAddr::is_loopback) && !ips.is_empty(),
            "{ips:?}"
        );
    }
}
