//! Name resolution, done by the host (never by the plugin). Pluggable so
//! that embedders can use their own resolver and tests can map names to
//! loopback ports.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

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

/// The system's resolver, through tokio (`getaddrinfo` on a blocking
/// thread). Proxy settings from the environment are never consulted.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, port)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}
