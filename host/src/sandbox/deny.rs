//! Deny-everything implementations of interfaces a plugin's language
//! runtime imports but a tool never needs (`wasi:sockets`).
//!
//! CPython built by componentize-py imports all seven `wasi:sockets`
//! interfaces whether the tool uses them or not, so such a plugin is
//! refused at load. A plugin whose manifest entry names these interfaces in
//! `deny_imports` gets them linked here instead: every operation returns the
//! interface's own `access-denied` error code, the one function that must
//! return a value (`instance-network`) returns an inert handle that no
//! operation accepts, and anything else traps. wasmtime-wasi's real sockets
//! implementation is never linked. The linker (`linker.rs`) adds these for
//! every plugin; the load-time import check (`is_allowed`) lets a plugin
//! import them only when its manifest entry opts in.
//!
//! The functions are defined with dynamic types (`func_new`), so one rule
//! covers every function of the interface: the shape of the result decides
//! the answer, never the function's name.

use super::StoreData;
use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{Linker, LinkerInstance, Resource, ResourceAny, ResourceType, Type, Val};
use wasmtime::{AsContextMut as _, StoreContextMut};

/// The version the interfaces are defined at; the linker matches any
/// `0.2.x` import to it.
const VERSION: &str = "0.2.12";

/// Every interface that may be linked deny-everything: (interface,
/// resources it defines, functions it exports).
pub(crate) const DENIABLE: &[(&str, &[&str], &[&str])] = &[
    (
        "wasi:sockets/network",
        &["network"],
        &["network-error-code"],
    ),
    ("wasi:sockets/instance-network", &[], &["instance-network"]),
    (
        "wasi:sockets/ip-name-lookup",
        &["resolve-address-stream"],
        &[
            "resolve-addresses",
            "[method]resolve-address-stream.resolve-next-address",
            "[method]resolve-address-stream.subscribe",
        ],
    ),
    ("wasi:sockets/tcp", &["tcp-socket"], TCP),
    (
        "wasi:sockets/tcp-create-socket",
        &[],
        &["create-tcp-socket"],
    ),
    (
        "wasi:sockets/udp",
        &[
            "udp-socket",
            "incoming-datagram-stream",
            "outgoing-datagram-stream",
        ],
        UDP,
    ),
    (
        "wasi:sockets/udp-create-socket",
        &[],
        &["create-udp-socket"],
    ),
];

const TCP: &[&str] = &[
    "[method]tcp-socket.start-bind",
    "[method]tcp-socket.finish-bind",
    "[method]tcp-socket.start-connect",
    "[method]tcp-socket.finish-connect",
    "[method]tcp-socket.start-listen",
    "[method]tcp-socket.finish-listen",
    "[method]tcp-socket.accept",
    "[method]tcp-socket.local-address",
    "[method]tcp-socket.remote-address",
    "[method]tcp-socket.is-listening",
    "[method]tcp-socket.address-family",
    "[method]tcp-socket.set-listen-backlog-size",
    "[method]tcp-socket.keep-alive-enabled",
    "[method]tcp-socket.set-keep-alive-enabled",
    "[method]tcp-socket.keep-alive-idle-time",
    "[method]tcp-socket.set-keep-alive-idle-time",
    "[method]tcp-socket.keep-alive-interval",
    "[method]tcp-socket.set-keep-alive-interval",
    "[method]tcp-socket.keep-alive-count",
    "[method]tcp-socket.set-keep-alive-count",
    "[method]tcp-socket.hop-limit",
    "[method]tcp-socket.set-hop-limit",
    "[method]tcp-socket.receive-buffer-size",
    "[method]tcp-socket.set-receive-buffer-size",
    "[method]tcp-socket.send-buffer-size",
    "[method]tcp-socket.set-send-buffer-size",
    "[method]tcp-socket.subscribe",
    "[method]tcp-socket.shutdown",
];

const UDP: &[&str] = &[
    "[method]udp-socket.start-bind",
    "[method]udp-socket.finish-bind",
    "[method]udp-socket.stream",
    "[method]udp-socket.local-address",
    "[method]udp-socket.remote-address",
    "[method]udp-socket.address-family",
    "[method]udp-socket.unicast-hop-limit",
    "[method]udp-socket.set-unicast-hop-limit",
    "[method]udp-socket.receive-buffer-size",
    "[method]udp-socket.set-receive-buffer-size",
    "[method]udp-socket.send-buffer-size",
    "[method]udp-socket.set-send-buffer-size",
    "[method]udp-socket.subscribe",
    "[method]incoming-datagram-stream.receive",
    "[method]incoming-datagram-stream.subscribe",
    "[method]outgoing-datagram-stream.check-send",
    "[method]outgoing-datagram-stream.send",
    "[method]outgoing-datagram-stream.subscribe",
];

/// The host side of every deny-everything resource. None is ever created
/// except the inert `network` handle, which no operation accepts.
struct Denied;

/// Expands a manifest's `deny_imports` entry (`wasi:sockets/tcp` or
/// `wasi:sockets/*`) to the interfaces it names, or `None` if it names
/// none that may be linked deny-everything.
pub(crate) fn expand(pattern: &str) -> Option<Vec<&'static str>> {
    let names: Vec<&'static str> = match pattern.strip_suffix("/*") {
        Some(package) => DENIABLE
            .iter()
            .map(|(name, _, _)| *name)
            .filter(|name| name.split_once('/').is_some_and(|(p, _)| p == package))
            .collect(),
        None => DENIABLE
            .iter()
            .map(|(name, _, _)| *name)
            .filter(|name| *name == pattern)
            .collect(),
    };
    (!names.is_empty()).then_some(names)
}

/// The interfaces a plugin's `deny_imports` patterns name (patterns that
/// name none add none: the import stays refused).
pub(crate) fn interfaces(patterns: &[String]) -> Vec<&'static str> {
    patterns
        .iter()
        .filter_map(|p| expand(p))
        .flatten()
        .collect()
}

/// Links every interface of [`DENIABLE`] as deny-everything.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    for (interface, resources, functions) in DENIABLE {
        let mut instance = linker.instance(&format!("{interface}@{VERSION}"))?;
        for resource in *resources {
            instance.resource(resource, ResourceType::host::<Denied>(), |_, _| Ok(()))?;
        }
        for function in *functions {
            define(&mut instance, interface, function)?;
        }
    }
    Ok(())
}

fn define(
    instance: &mut LinkerInstance<'_, StoreData>,
    interface: &'static str,
    function: &'static str,
) -> wasmtime::Result<()> {
    instance.func_new(
        function,
        move |mut store: StoreContextMut<'_, StoreData>,
              ty: ComponentFunc,
              _params: &[Val],
              results: &mut [Val]| {
            let (Some(slot), Some(result)) = (results.first_mut(), ty.results().next()) else {
                return Err(denied_trap(interface, function));
            };
            *slot = match result {
                // The interface's own refusal: `error-code.access-denied`.
                Type::Result(r) => match r.err() {
                    Some(Type::Enum(e)) if e.names().any(|n| n == "access-denied") => {
                        Val::Result(Err(Some(Box::new(Val::Enum("access-denied".into())))))
                    }
                    _ => return Err(denied_trap(interface, function)),
                },
                // `network-error-code`: no error ever came from a socket.
                Type::Option(_) => Val::Option(None),
                // `instance-network`: an inert handle every operation refuses.
                Type::Own(_) => {
                    let handle = Resource::<Denied>::new_own(0);
                    Val::Resource(ResourceAny::try_from_resource(
                        handle,
                        store.as_context_mut(),
                    )?)
                }
                // Unreachable without a socket, which no plugin can get.
                _ => return Err(denied_trap(interface, function)),
            };
            Ok(())
        },
    )
}

fn denied_trap(interface: &str, function: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "{interface}.{function} is denied to this plugin (linked deny-everything)"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_wildcard_names_every_sockets_interface_and_nothing_else() {
        assert_eq!(super::expand("wasi:sockets/*").map(|v| v.len()), Some(7));
        assert_eq!(
            super::expand("wasi:sockets/tcp"),
            Some(vec!["wasi:sockets/tcp"])
        );
        assert_eq!(super::expand("wasi:http/*"), None);
        assert_eq!(super::expand("wasi:filesystem/types"), None);
        assert_eq!(super::expand("wasi:sockets/tcpx"), None);
    }
}
