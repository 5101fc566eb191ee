//! What a plugin may import, linked interface by interface.
//!
//! [`INTERFACES`] is the single list of everything the host provides. It
//! drives both the linker and the load-time import check, so an interface
//! cannot be linked without being allowed or allowed without being linked.
//! `wasi:sockets` is deliberately absent: a component that imports it is
//! refused when it loads, with the list of offending imports, instead of
//! being linked to stubs. `portcullis:tool/http` and `wasi:http` (whose
//! requests go through the same egress gate, see `wasi_http`) are linked
//! for everyone but allowed only to plugins with HTTP grants
//! ([`NEEDS_HTTP_GRANT`]).

use super::StoreData;
use wasmtime::component::{HasData, HasSelf, Linker, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi_http::WasiHttp;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::{LinkOptions as HttpLinkOptions, http as wasi_http};
use wasmtime_wasi_io::bindings::wasi::io;

type AddToLinker = fn(&mut Linker<StoreData>) -> wasmtime::Result<()>;

/// Gives the `wasi:io` bindings the store's resource table.
struct HasIo;
impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Every interface a plugin may import: (package, interface, semver track,
/// linker). Imports match on package and interface name and on the version's
/// major.minor track (any `0.2.x` for WASI 0.2).
pub(crate) const INTERFACES: &[(&str, &str, &str, AddToLinker)] = &[
    ("wasi:io", "error", "0.2", |l| {
        io::error::add_to_linker::<StoreData, HasIo>(l, |t| t.ctx().table)
    }),
    ("wasi:io", "poll", "0.2", |l| {
        io::poll::add_to_linker::<StoreData, HasIo>(l, |t| t.ctx().table)
    }),
    ("wasi:io", "streams", "0.2", |l| {
        io::streams::add_to_linker::<StoreData, HasIo>(l, |t| t.ctx().table)
    }),
    ("wasi:clocks", "wall-clock", "0.2", |l| {
        clocks::wall_clock::add_to_linker::<StoreData, WasiClocks>(l, StoreData::clocks)
    }),
    ("wasi:clocks", "monotonic-clock", "0.2", |l| {
        clocks::monotonic_clock::add_to_linker::<StoreData, WasiClocks>(l, StoreData::clocks)
    }),
    ("wasi:random", "random", "0.2", |l| {
        random::random::add_to_linker::<StoreData, WasiRandom>(l, |t| t.wasi.random())
    }),
    ("wasi:random", "insecure", "0.2", |l| {
        random::insecure::add_to_linker::<StoreData, WasiRandom>(l, |t| t.wasi.random())
    }),
    ("wasi:random", "insecure-seed", "0.2", |l| {
        random::insecure_seed::add_to_linker::<StoreData, WasiRandom>(l, |t| t.wasi.random())
    }),
    ("wasi:filesystem", "types", "0.2", |l| {
        filesystem::types::add_to_linker::<StoreData, WasiFilesystem>(l, StoreData::filesystem)
    }),
    ("wasi:filesystem", "preopens", "0.2", |l| {
        filesystem::preopens::add_to_linker::<StoreData, WasiFilesystem>(l, StoreData::filesystem)
    }),
    // Environment is empty unless the manifest sets variables; args are
    // always empty; stdin is always empty; stdout/stderr are capped sinks.
    ("wasi:cli", "environment", "0.2", |l| {
        cli::environment::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)
    }),
    ("wasi:cli", "exit", "0.2", |l| {
        cli::exit::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)
    }),
    ("wasi:cli", "stdin", "0.2", |l| {
        cli::stdin::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)
    }),
    ("wasi:cli", "stdout", "0.2", |l| {
        cli::stdout::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)
    }),
    ("wasi:cli", "stderr", "0.2", |l| {
        cli::stderr::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)
    }),
    ("wasi:cli", "terminal-input", "0.2", |l| {
        cli::terminal_input::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)
    }),
    ("wasi:cli", "terminal-output", "0.2", |l| {
        cli::terminal_output::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)
    }),
    ("wasi:cli", "terminal-stdin", "0.2", |l| {
        cli::terminal_stdin::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)
    }),
    ("wasi:cli", "terminal-stdout", "0.2", |l| {
        cli::terminal_stdout::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)
    }),
    ("wasi:cli", "terminal-stderr", "0.2", |l| {
        cli::terminal_stderr::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)
    }),
    ("portcullis:tool", "log", "0.1", |l| {
        super::bindings::portcullis::tool::log::add_to_linker::<StoreData, HasSelf<StoreData>>(
            l,
            |t| t,
        )
    }),
    ("portcullis:tool", "http", "0.1", |l| {
        super::bindings::portcullis::tool::http::add_to_linker::<StoreData, HasSelf<StoreData>>(
            l,
            |t| t,
        )
    }),
    ("wasi:http", "types", "0.2", |l| {
        wasi_http::types::add_to_linker::<StoreData, WasiHttp>(
            l,
            &HttpLinkOptions::default().into(),
            StoreData::http,
        )
    }),
    ("wasi:http", "outgoing-handler", "0.2", |l| {
        wasi_http::outgoing_handler::add_to_linker::<StoreData, WasiHttp>(l, StoreData::http)
    }),
];

/// Interfaces of [`INTERFACES`] a plugin may import only with HTTP grants.
pub(crate) const NEEDS_HTTP_GRANT: &[(&str, &str)] = &[
    ("portcullis:tool", "http"),
    ("wasi:http", "types"),
    ("wasi:http", "outgoing-handler"),
];

/// Builds the linker with exactly [`INTERFACES`].
pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<StoreData>> {
    let mut linker = Linker::new(engine);
    for (_, _, _, add) in INTERFACES {
        add(&mut linker)?;
    }
    // Allowed only to plugins that opt in (`deny_imports`); see deny.rs.
    super::deny::add_to_linker(&mut linker)?;
    // The writing and creating filesystem functions count against the
    // call's disk budget; see disk.rs.
    super::disk::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Whether an import is one of [`NEEDS_HTTP_GRANT`] (at any version).
pub(crate) fn needs_http_grant(import: &str) -> bool {
    let path = import.split_once('@').map_or(import, |(path, _)| path);
    path.split_once('/')
        .is_some_and(|interface| NEEDS_HTTP_GRANT.contains(&interface))
}

/// Whether an import name such as `wasi:io/streams@0.2.6` is in
/// [`INTERFACES`] and, for [`NEEDS_HTTP_GRANT`], whether `http` grants are
/// in force; or one of `denied` (linked deny-everything, see deny.rs).
pub(crate) fn is_allowed(import: &str, http: bool, denied: &[&str]) -> bool {
    let Some((path, version)) = import.split_once('@') else {
        return false;
    };
    let Some((package, interface)) = path.split_once('/') else {
        return false;
    };
    if denied.contains(&path) && version.starts_with("0.2.") {
        return true;
    }
    if !http && NEEDS_HTTP_GRANT.contains(&(package, interface)) {
        return false;
    }
    INTERFACES.iter().any(|(p, i, track, _)| {
        *p == package
            && *i == interface
            && version
                .strip_prefix(track)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

#[cfg(test)]
mod tests {
    fn is_allowed(import: &str) -> bool {
        super::is_allowed(import, false, &[])
    }

    #[test]
    fn portcullis_http_needs_an_http_grant() {
        assert!(!super::is_allowed("portcullis:tool/http@0.1.0", false, &[]));
        assert!(super::is_allowed("portcullis:tool/http@0.1.0", true, &[]));
        assert!(!super::is_allowed(
            "wasi:http/outgoing-handler@0.2.6",
            false,
            &[]
        ));
        assert!(!super::is_allowed("wasi:http/types@0.2.6", false, &[]));
    }

    #[test]
    fn wasi_http_is_allowed_with_an_http_grant() {
        assert!(super::is_allowed(
            "wasi:http/outgoing-handler@0.2.6",
            true,
            &[]
        ));
        assert!(super::is_allowed("wasi:http/types@0.2.0", true, &[]));
        assert!(!super::is_allowed(
            "wasi:http/incoming-handler@0.2.6",
            true,
            &[]
        ));
    }

    #[test]
    fn wasi_02_interfaces_are_allowed_at_any_patch() {
        assert!(is_allowed("wasi:io/streams@0.2.0"));
        assert!(is_allowed("wasi:filesystem/types@0.2.6"));
        assert!(is_allowed("portcullis:tool/log@0.1.0"));
    }

    #[test]
    fn sockets_http_and_unknown_interfaces_are_refused() {
        assert!(!is_allowed("wasi:sockets/tcp@0.2.6"));
        assert!(!is_allowed("wasi:sockets/instance-network@0.2.6"));
        assert!(!is_allowed("wasi:http/outgoing-handler@0.2.6"));
        assert!(!is_allowed("evil:thing/iface@1.0.0"));
    }

    #[test]
    fn sockets_are_allowed_only_as_the_deny_everything_interfaces_opted_into() {
        let tcp = ["wasi:sockets/tcp"];
        assert!(super::is_allowed("wasi:sockets/tcp@0.2.9", false, &tcp));
        assert!(!super::is_allowed("wasi:sockets/udp@0.2.9", false, &tcp));
        assert!(!super::is_allowed("wasi:sockets/tcp@0.3.0", false, &tcp));
    }

    #[test]
    fn other_versions_and_unversioned_names_are_refused() {
        assert!(!is_allowed("wasi:io/streams@0.3.0"));
        assert!(!is_allowed("wasi:io/streams@0.20.0"));
        assert!(!is_allowed("wasi:io/streams"));
        assert!(!is_allowed("portcullis:tool/log@1.0.0"));
    }
}
