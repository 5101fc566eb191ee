//! The sandbox: one wasmtime engine, and a fresh, bounded store per call.
//!
//! A [`Sandbox`] is made once per host: the engine (fuel, epochs, optional
//! core dumps, a bounded wasm stack), the linker with everything a plugin
//! may import, and the thread that advances the epoch. Each plugin is
//! compiled (or loaded from the compile cache), checked for imports the
//! host does not provide, and type-checked against the linker once, into a
//! [`PluginPre`].
//!
//! A call's life in the sandbox, in order ([`Sandbox::run`]):
//!
//! 1. Capped, scrubbing stdout and stderr sinks, and the call's WASI
//!    context built from the plugin's
//!    [`PluginPolicy`](crate::policy::PluginPolicy): its preopens, its
//!    explicit env, nothing else (no args, no stdin, no sockets). Listing
//!    tools gets no grants at all. A granted directory that cannot be
//!    opened ends the call here, as a setup failure.
//! 2. The call's egress gate, handed over ready by the host with the
//!    request (the way wasmtime-wasi-http is handed its hooks), when the
//!    plugin has HTTP grants; without one every HTTP request of the call is
//!    denied.
//! 3. A fresh `Store` holding the call's [`StoreData`] (memory limiter,
//!    bounded resource table, log buffer, both HTTP interfaces pointed at
//!    the gate), then its fuel and epoch deadline.
//! 4. A fresh instance, and the requested export (`list-tools` or `call`),
//!    racing the host's cancellation, the gate stopping a suspicious call,
//!    and the deadline. Meanwhile the plugin's imports run on the host:
//!    `portcullis:tool/http` and `wasi:http` through the gate,
//!    `portcullis:tool/log` into the store.
//! 5. The outcome, typed from trap codes and the limiter's own record
//!    (never from message text) as a [`Returned`] or a [`Failure`], with a
//!    core dump when the guest trapped and the host captures them.
//! 6. The gate closes and the store is dropped, so nothing survives to the
//!    next call and a trap killed only this instance; stdio and logs are
//!    gathered into a [`Run`], scrubbed once more if the call fetched a
//!    secret value the host did not know at load. The egress records stay
//!    with the gate, whose owner (the host) reads them.
//!
//! Time is bounded three ways: fuel for CPU, an epoch deadline that
//! interrupts running guest code (yielding to the executor every tick so one
//! call cannot starve others), and an outer timeout, because neither fuel
//! nor epochs can interrupt a guest blocked inside a host call.
//!
//! Files, in the order of a call:
//!
//! - `mod.rs`: the engine ([`Sandbox`]: compile, compile-cache artifacts,
//!   imports and exports, prepare) and the WIT bindings;
//! - `linker.rs`: the one list of interfaces a plugin may import;
//! - `deny.rs`: deny-everything `wasi:sockets`, for plugins that opt in;
//! - `run.rs`: one call, steps 1 to 6, with the epoch ticker and the
//!   classification of failures;
//! - `stdio.rs`: the capped, scrubbing stdout and stderr sinks;
//! - `store.rs`: [`StoreData`], the host state of one call;
//! - `limits.rs`: the memory limiter over all of an instance's memories;
//! - `disk.rs`: the disk budget, counted in shadowed `wasi:filesystem`
//!   functions and wrapped file streams;
//! - `http.rs`: `portcullis:tool/http`, through the gate;
//! - `wasi_http.rs`: `wasi:http/outgoing-handler`, through the same gate;
//! - `log.rs`: `portcullis:tool/log`, scrubbed and capped.

mod core_dump;
mod deny;
mod dirs;
mod disk;
mod http;
mod limits;
mod linker;
mod log;
mod pool;
mod run;
mod settle;
mod stdio;
mod store;
mod wasi_http;

pub(crate) use core_dump::CoreDumps;
pub(crate) use deny::expand as deny_expand;
pub(crate) use dirs::OpenDirs;
pub(crate) use linker::needs_http_grant;
pub use log::{LogLevel, LogRecord};
pub use pool::InstanceAllocation;
pub(crate) use pool::{Busy, MAX_SLOTS, PoolSettings};
pub(crate) use run::Run;
pub(crate) use run::{Failure, Invocation, Returned};
pub use stdio::Captured;
pub(crate) use store::StoreData;

use crate::secrets::Scrubber;
use pool::Slots;
use run::Ticker;
use std::sync::Arc;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        imports: { "portcullis:tool/http.send": async | trappable },
        exports: { default: async },
    });
}

pub(crate) use bindings::PluginPre;
use bindings::exports::portcullis::tool::tool as wit;
pub(crate) use wit::{Effect as WitEffect, ToolError as WitToolError, ToolSpec as WitToolSpec};

/// The engine and linker shared by every plugin of a host.
pub(crate) struct Sandbox {
    engine: Engine,
    linker: wasmtime::component::Linker<StoreData>,
    _ticker: Ticker,
    /// The host-wide cap on calls running at once (and the pool's slots).
    slots: Slots,
    /// Scrubs secret values from captured stdio and logs.
    scrubber: Arc<Scrubber>,
    /// File operations on grants run on the call's own thread.
    file_io_in_place: bool,
    /// [`Sandbox::fingerprint`], once worked out.
    fingerprint: std::sync::OnceLock<String>,
}

impl Sandbox {
    /// A sandbox that scrubs nothing and reserves no pool (for inspecting
    /// components).
    pub(crate) fn new() -> Result<Sandbox, String> {
        let pool = PoolSettings {
            allocation: InstanceAllocation::OnDemand,
            ..PoolSettings::default()
        };
        Sandbox::scrubbing(Arc::new(Scrubber::default()), false, &pool)
    }

    /// A sandbox that scrubs `scrubber`'s secrets from every call's stdio
    /// and logs, with `core_dumps` captures a core dump when a guest traps,
    /// and allocates instances as `pool` says.
    pub(crate) fn scrubbing(
        scrubber: Arc<Scrubber>,
        core_dumps: bool,
        pool: &PoolSettings,
    ) -> Result<Sandbox, String> {
        let mut config = Config::new();
        pool.configure(&mut config);
        config
            .wasm_component_model(true)
            .coredump_on_trap(core_dumps)
            .consume_fuel(true)
            .epoch_interruption(true)
            // Deep recursion traps with a stack overflow instead of
            // exhausting the host thread's stack.
            .max_wasm_stack(512 * 1024);
        let engine = Engine::new(&config).map_err(|e| format!("failed to create engine: {e}"))?;
        let linker = linker::linker(&engine).map_err(|e| format!("failed to link: {e}"))?;
        let ticker = Ticker::start(engine.clone())
            .map_err(|e| format!("failed to start the epoch thread: {e}"))?;
        Ok(Sandbox {
            engine,
            linker,
            _ticker: ticker,
            slots: Slots::new(pool),
            scrubber,
            file_io_in_place: pool.file_io_in_place,
            fingerprint: std::sync::OnceLock::new(),
        })
    }

    /// How many instances may run at once (the pool's slots).
    pub(crate) fn slots(&self) -> usize {
        usize::try_from(self.slots.total()).unwrap_or(usize::MAX)
    }

    /// Compiles exactly `bytes`.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Component, String> {
        Component::from_binary(&self.engine, bytes).map_err(|e| e.to_string())
    }

    /// Compiles exactly `bytes` to a loadable artifact (for the compile
    /// cache).
    pub(crate) fn precompile(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        self.engine
            .precompile_component(bytes)
            .map_err(|e| e.to_string())
    }

    /// Loads an artifact this engine just produced with
    /// [`Sandbox::precompile`], or one whose checksum the compile cache
    /// verified.
    pub(crate) fn deserialize(&self, artifact: &[u8]) -> Result<Component, String> {
        // SAFETY: wasmtime requires the bytes to come from
        // `precompile_component` of a compatible engine (it checks the
        // header, version and settings itself). They do: either this engine
        // produced them moments ago, or the cache wrote them and checked
        // their keyed MAC before this call, from a directory only this user
        // can write (see `crate::plugin::cache`).
        #[expect(
            unsafe_code,
            reason = "loading precompiled code is unsafe by nature; see SAFETY"
        )]
        let component = unsafe { Component::deserialize(&self.engine, artifact) };
        component.map_err(|e| e.to_string())
    }

    /// Identifies the engine's settings and wasmtime's version, so that the
    /// cache never offers an artifact built by another configuration;
    /// worked out once per sandbox, when first asked.
    pub(crate) fn fingerprint(&self) -> &str {
        self.fingerprint.get_or_init(|| {
            use std::hash::{Hash, Hasher};
            // `DefaultHasher::new()` has fixed keys: stable for one build
            // of the host, which is all a local cache needs.
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            self.engine
                .precompile_compatibility_hash()
                .hash(&mut hasher);
            env!("CARGO_PKG_VERSION").hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        })
    }

    /// The component's imports that the host does not provide to a plugin
    /// with (or without) HTTP grants and with these `deny_imports`.
    pub(crate) fn forbidden_imports(
        &self,
        component: &Component,
        http: bool,
        deny_imports: &[String],
    ) -> Vec<String> {
        self.imports(component, http, deny_imports)
            .into_iter()
            .filter(|(_, allowed)| !allowed)
            .map(|(name, _)| name)
            .collect()
    }

    /// Every import of the component, and whether the host provides it to
    /// a plugin with (or without) HTTP grants and with these `deny_imports`.
    pub(crate) fn imports(
        &self,
        component: &Component,
        http: bool,
        deny_imports: &[String],
    ) -> Vec<(String, bool)> {
        let denied = deny::interfaces(deny_imports);
        component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| (name.to_string(), linker::is_allowed(name, http, &denied)))
            .collect()
    }

    /// The names of the component's exports.
    pub(crate) fn exports(&self, component: &Component) -> Vec<String> {
        component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Loads an artifact the compile cache authenticated in a sealed copy,
    /// by mapping that copy.
    #[cfg(target_os = "linux")]
    pub(crate) fn deserialize_sealed(
        &self,
        artifact: &crate::fs::SealedCopy,
    ) -> Result<Component, String> {
        // SAFETY: as `deserialize`: the cache verified the artifact's MAC
        // over the bytes it copied. wasmtime maps the copy, which is sealed
        // against writing, growing and shrinking: the mapped bytes are the
        // verified ones for as long as the component lives, and no cut-off
        // end can fault.
        #[expect(
            unsafe_code,
            reason = "loading precompiled code is unsafe by nature; see SAFETY"
        )]
        let component = unsafe { Component::deserialize_file(&self.engine, artifact.path()) };
        component.map_err(|e| e.to_string())
    }

    /// Whether file operations on grants run on the call's own thread.
    pub(crate) fn file_io_in_place(&self) -> bool {
        self.file_io_in_place
    }

    /// Type-checks the component against the linker and the `plugin` world,
    /// once per plugin; the plugin's granted directories, opened once, go
    /// with it.
    pub(crate) fn prepare(
        &self,
        component: &Component,
        dirs: OpenDirs,
    ) -> Result<Prepared, String> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| e.to_string())?;
        let pre = PluginPre::new(pre).map_err(|e| e.to_string())?;
        Ok(Prepared { pre, dirs })
    }
}

/// What every call of a plugin starts from, made once at load: the
/// type-checked, pre-instantiated component and its open grants.
pub(crate) struct Prepared {
    pre: PluginPre<StoreData>,
    dirs: OpenDirs,
}
