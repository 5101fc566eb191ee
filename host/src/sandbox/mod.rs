//! The sandbox: one wasmtime engine, and a fresh, bounded store per call.
//!
//! Every call gets a new `Store` with its own WASI context built from the
//! plugin's [`PluginPolicy`] (its preopens, its explicit env, nothing else),
//! its own fuel, memory limiter and deadline, and capped stdio sinks. The
//! store is dropped when the call ends, so nothing survives from one call to
//! the next, and a trap kills only that instance.
//!
//! Time is bounded three ways: fuel for CPU, an epoch deadline that
//! interrupts running guest code (yielding to the executor every tick so one
//! call cannot starve others), and an outer timeout, because neither fuel
//! nor epochs can interrupt a guest blocked inside a host call.

mod limits;
mod linker;
mod stdio;
mod wasi_http;

pub(crate) use linker::needs_http_grant;

pub use stdio::Captured;

use crate::egress::{
    CallEgress, CallFacts, EgressError, EgressRecord, GuestRequest, GuestTimeouts, Network,
    PluginGrants, SecretChoice, Suspicious,
};
use crate::error::Limit;
use crate::policy::{DirMode, PluginPolicy, caps};
use crate::secrets::Scrubber;
use limits::Limiter;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use stdio::CappedPipe;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

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

/// How often the engine's epoch advances: the granularity of deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Host state of one store (one call).
pub(crate) struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    logs: Vec<LogRecord>,
    logs_dropped: u64,
    plugin: Arc<str>,
    scrubber: Arc<Scrubber>,
    /// The call's egress gate; `None` without HTTP grants (and while
    /// listing tools), when every request is denied.
    egress: Option<Arc<CallEgress>>,
    http: WasiHttpCtx,
    /// `wasi:http` requests go through `egress` too.
    http_hooks: wasi_http::GateHooks,
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreData {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

/// Level of a plugin log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging information.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected the plugin recovered from.
    Warn,
    /// Something failed.
    Error,
}

/// One message a plugin logged during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level.
    pub level: LogLevel,
    /// The message, cut to 4 KiB.
    pub message: String,
}

impl bindings::portcullis::tool::log::Host for StoreData {
    fn log(&mut self, level: bindings::portcullis::tool::log::Level, message: String) {
        use bindings::portcullis::tool::log::Level;
        if self.logs.len() >= caps::LOG_MESSAGES {
            self.logs_dropped += 1;
            return;
        }
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        // Scrubbed before it is cut (a cut value would leave its prefix),
        // after a first cut that bounds the work.
        let mut message = message;
        crate::text::truncate(&mut message, caps::LOG_MESSAGE_BYTES * 2);
        let mut message = self.scrubber.scrub_str(&message).into_owned();
        crate::text::truncate(&mut message, caps::LOG_MESSAGE_BYTES);
        // Debug formatting escapes control characters: a plugin cannot
        // forge host log lines.
        tracing::debug!(plugin = %self.plugin, ?level, message = ?message, "plugin log");
        self.logs.push(LogRecord { level, message });
    }
}

impl bindings::portcullis::tool::http::Host for StoreData {
    async fn send(
        &mut self,
        request: bindings::portcullis::tool::http::Request,
    ) -> wasmtime::Result<
        Result<bindings::portcullis::tool::http::Response, bindings::portcullis::tool::http::Error>,
    > {
        use bindings::portcullis::tool::http::{Error as WitError, Response as WitResponse};
        let Some(egress) = self.egress.clone() else {
            return Ok(Err(WitError::Denied(
                "this plugin has no HTTP grants (none are in force while listing tools)".into(),
            )));
        };
        let outcome = egress
            .send(GuestRequest {
                method: request.method,
                url: request.url,
                headers: request.headers,
                body: request.body,
                secret: request
                    .secret
                    .map_or(SecretChoice::None, SecretChoice::Named),
                timeouts: GuestTimeouts::default(),
            })
            .await
            .map_err(wasmtime::Error::new)?;
        Ok(match outcome {
            Ok(response) => Ok(WitResponse {
                status: response.status,
                headers: response.headers,
                body: response.body,
            }),
            Err(EgressError::Denied(m)) => Err(WitError::Denied(m)),
            Err(EgressError::InvalidRequest(m)) => Err(WitError::InvalidRequest(m)),
            Err(EgressError::Timeout(m)) => Err(WitError::Timeout(m)),
            Err(EgressError::TooLarge(m)) => Err(WitError::TooLarge(m)),
            Err(EgressError::TooManyRequests(m)) => Err(WitError::TooManyRequests(m)),
            Err(EgressError::Upstream(m)) => Err(WitError::Upstream(m)),
        })
    }
}

/// What one call may reach and attach, and who is calling, borrowed from
/// the host.
#[derive(Clone, Copy)]
pub(crate) struct CallGrants<'a> {
    pub(crate) grants: &'a PluginGrants,
    pub(crate) call_id: u64,
    pub(crate) caller: Option<&'a str>,
}

/// What the sandbox is asked to run.
pub(crate) enum Request<'a> {
    /// `list-tools`, run without any grants.
    ListTools,
    /// `call(name, arguments)`, with the host's network (resolver, TLS roots) and the call's
    /// denial budget for the egress gate.
    Call {
        tool: &'a str,
        arguments: &'a str,
        network: &'a Network,
        max_denials: u32,
        /// What the call may reach and attach, and who is calling.
        grants: CallGrants<'a>,
    },
}

/// What a completed guest function returned.
pub(crate) enum Response {
    Tools(Vec<WitToolSpec>),
    Output(String),
    ToolError(WitToolError),
}

/// How a call that did not complete ended.
#[derive(Debug)]
pub(crate) enum Failure {
    Limit(Limit, String),
    Crashed(String),
    Cancelled,
    /// The call piled up more denials than allowed and was stopped.
    Suspicious(u32),
    /// The sandbox could not be set up (e.g. a granted directory vanished).
    Setup(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Limit(limit, detail) => {
                write!(f, "{} limit exceeded: {detail}", limit.as_str())
            }
            Failure::Crashed(reason) => write!(f, "crashed: {reason}"),
            Failure::Cancelled => f.write_str("cancelled"),
            Failure::Suspicious(denials) => {
                write!(f, "stopped as suspicious after {denials} denials")
            }
            Failure::Setup(reason) => write!(f, "setup failed: {reason}"),
        }
    }
}

/// Everything a run produced, whether or not it completed.
pub(crate) struct Run {
    pub(crate) result: Result<Response, Failure>,
    pub(crate) stdout: Captured,
    pub(crate) stderr: Captured,
    pub(crate) logs: Vec<LogRecord>,
    pub(crate) logs_dropped: u64,
    /// Every outbound request attempted, allowed or not.
    pub(crate) egress: Vec<EgressRecord>,
    /// A standard WebAssembly core dump of the store, when the guest
    /// trapped and the host captures them.
    pub(crate) core_dump: Option<Vec<u8>>,
    /// The call's scrubber when a secret source gave out a value the host
    /// did not know at load (a rotated or per-caller token).
    pub(crate) scrubber: Option<Arc<Scrubber>>,
    pub(crate) fuel_used: u64,
    pub(crate) duration: Duration,
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("portcullis-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The engine and linker shared by every plugin of a host.
pub(crate) struct Sandbox {
    engine: Engine,
    linker: wasmtime::component::Linker<StoreData>,
    _ticker: Ticker,
    /// Scrubs secret values from captured stdio and logs.
    scrubber: Arc<Scrubber>,
}

impl Sandbox {
    /// A sandbox that scrubs nothing (for hosts without secrets, and for
    /// inspecting components).
    pub(crate) fn new() -> Result<Sandbox, String> {
        Sandbox::scrubbing(Arc::new(Scrubber::default()), false)
    }

    /// A sandbox that scrubs `scrubber`'s secrets from every call's stdio
    /// and logs and, with `core_dumps`, captures a core dump when a guest
    /// traps.
    pub(crate) fn scrubbing(scrubber: Arc<Scrubber>, core_dumps: bool) -> Result<Sandbox, String> {
        let mut config = Config::new();
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
            scrubber,
        })
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
        // produced them moments ago, or the cache wrote them and verified
        // their sha256 before this call, from a directory only this user can
        // write (see `crate::cache`).
        #[expect(
            unsafe_code,
            reason = "loading precompiled code is unsafe by nature; see SAFETY"
        )]
        let component = unsafe { Component::deserialize(&self.engine, artifact) };
        component.map_err(|e| e.to_string())
    }

    /// Identifies the engine's settings and wasmtime's version, so that the
    /// cache never offers an artifact built by another configuration.
    pub(crate) fn fingerprint(&self) -> String {
        use std::hash::{Hash, Hasher};
        // `DefaultHasher::new()` has fixed keys: stable for one build of
        // the host, which is all a local cache needs.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// The component's imports that the host does not provide to a plugin
    /// with (or without) HTTP grants.
    pub(crate) fn forbidden_imports(&self, component: &Component, http: bool) -> Vec<String> {
        self.imports(component, http)
            .into_iter()
            .filter(|(_, allowed)| !allowed)
            .map(|(name, _)| name)
            .collect()
    }

    /// Every import of the component, and whether the host provides it to
    /// a plugin with (or without) HTTP grants.
    pub(crate) fn imports(&self, component: &Component, http: bool) -> Vec<(String, bool)> {
        component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| (name.to_string(), linker::is_allowed(name, http)))
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

    /// Type-checks the component against the linker and the `plugin` world.
    pub(crate) fn prepare(&self, component: &Component) -> Result<PluginPre<StoreData>, String> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| e.to_string())?;
        PluginPre::new(pre).map_err(|e| e.to_string())
    }

    /// Runs `request` in a fresh instance under `policy`.
    pub(crate) async fn run(
        &self,
        pre: &PluginPre<StoreData>,
        policy: &PluginPolicy,
        request: Request<'_>,
        cancel: &CancellationToken,
    ) -> Run {
        let started = Instant::now();
        let limits = policy.limits;
        let stdout = CappedPipe::new(limits.stdio, &self.scrubber);
        let stderr = CappedPipe::new(limits.stdio, &self.scrubber);
        let finish = |result: Result<Response, Failure>,
                      store: Option<Store<StoreData>>,
                      core_dump: Option<Vec<u8>>| {
            let (logs, logs_dropped, egress, fuel_left) = match store {
                Some(mut store) => {
                    let fuel_left = store.get_fuel().unwrap_or(0);
                    let data = store.data_mut();
                    let found = (
                        std::mem::take(&mut data.logs),
                        data.logs_dropped,
                        data.egress.clone(),
                        fuel_left,
                    );
                    // Nothing more may leave: the gate closes, and dropping
                    // the store aborts any `wasi:http` request still under
                    // way (its record was written before it could send).
                    if let Some(egress) = &found.2 {
                        egress.close();
                    }
                    drop(store);
                    found
                }
                None => (Vec::new(), 0, None, limits.fuel),
            };
            let scrubber = egress
                .as_deref()
                .map(CallEgress::scrubber)
                .filter(|s| !Arc::ptr_eq(s, &self.scrubber));
            let (mut stdout, mut stderr) = (stdout.take(), stderr.take());
            let mut logs = logs;
            if let Some(scrubber) = &scrubber {
                // The pipes and the log scrubbed with what the host knew at
                // load; a value fetched during the call is caught here.
                for captured in [&mut stdout, &mut stderr] {
                    captured.rescrub(scrubber);
                }
                for record in &mut logs {
                    record.message = scrubber.scrub_str(&record.message).into_owned();
                }
            }
            Run {
                result,
                stdout,
                stderr,
                logs,
                logs_dropped,
                egress: egress
                    .as_deref()
                    .map(CallEgress::take_records)
                    .unwrap_or_default(),
                core_dump,
                scrubber,
                fuel_used: limits.fuel.saturating_sub(fuel_left),
                duration: started.elapsed(),
            }
        };

        let grants = matches!(request, Request::Call { .. });
        let wasi = match wasi_ctx(policy, grants, &stdout, &stderr) {
            Ok(wasi) => wasi,
            Err(e) => return finish(Err(Failure::Setup(e)), None, None),
        };
        let deadline = started + limits.timeout;
        let plugin: Arc<str> = Arc::from(policy.name.as_str());
        let egress = match &request {
            Request::Call {
                tool,
                network,
                max_denials,
                grants,
                ..
            } if !grants.grants.http.is_empty() => Some(Arc::new(CallEgress::new(
                Arc::clone(&plugin),
                limits,
                (*network).clone(),
                deadline.into(),
                *max_denials,
                CallFacts {
                    grants: grants.grants.clone(),
                    scrubber: Arc::clone(&self.scrubber),
                    tool: (*tool).to_string(),
                    call_id: grants.call_id,
                    caller: grants.caller.map(str::to_string),
                },
            ))),
            _ => None,
        };
        let stopped = egress.as_ref().map(|e| e.stopped().0.clone());
        let mut table = ResourceTable::new();
        table.set_max_capacity(caps::RESOURCES);
        let mut store = Store::new(
            &self.engine,
            StoreData {
                wasi,
                table,
                limiter: Limiter::new(limits.memory),
                logs: Vec::new(),
                logs_dropped: 0,
                plugin: Arc::clone(&plugin),
                scrubber: Arc::clone(&self.scrubber),
                http: {
                    // Headers beyond the gate's own limit are refused by the
                    // gate anyway; this bounds what a fields resource holds.
                    let mut http = WasiHttpCtx::new();
                    http.set_field_size_limit(4 * caps::HTTP_HEADER_BYTES);
                    http
                },
                http_hooks: wasi_http::GateHooks::new(egress.clone()),
                egress,
            },
        );
        store.limiter(|data| &mut data.limiter);
        if let Err(e) = store.set_fuel(limits.fuel) {
            return finish(Err(Failure::Setup(e.to_string())), Some(store), None);
        }
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });

        let outcome = {
            let store = &mut store;
            let guest = async move {
                let plugin = pre.instantiate_async(&mut *store).await?;
                let tool = plugin.portcullis_tool_tool();
                match request {
                    Request::ListTools => {
                        tool.call_list_tools(&mut *store).await.map(Response::Tools)
                    }
                    Request::Call {
                        tool: name,
                        arguments,
                        ..
                    } => tool
                        .call_call(&mut *store, name, arguments)
                        .await
                        .map(|r| match r {
                            Ok(output) => Response::Output(output),
                            Err(e) => Response::ToolError(e),
                        }),
                }
            };
            let stopped = async {
                match &stopped {
                    Some(token) => token.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => Interrupted::Cancelled,
                // A `wasi:http` request cannot trap the guest from its own
                // task: the gate stops the call instead.
                () = stopped => Interrupted::Suspicious,
                r = tokio::time::timeout_at(deadline.into(), guest) => match r {
                    Ok(Ok(response)) => Interrupted::No(response),
                    Ok(Err(e)) => Interrupted::Trap(e),
                    Err(_elapsed) => Interrupted::Deadline,
                },
            }
        };
        let mut core_dump = None;
        let result = match outcome {
            Interrupted::No(Response::Output(output)) if output.len() as u64 > limits.output => {
                Err(Failure::Limit(
                    Limit::Output,
                    format!(
                        "the output is {} bytes; the limit is {} bytes",
                        output.len(),
                        limits.output
                    ),
                ))
            }
            Interrupted::No(response) => Ok(response),
            Interrupted::Cancelled => Err(Failure::Cancelled),
            Interrupted::Suspicious => Err(Failure::Suspicious(
                store.data().egress.as_ref().map_or(0, |e| e.stopped().1),
            )),
            Interrupted::Deadline => Err(time_limit(limits.timeout)),
            Interrupted::Trap(e) => {
                core_dump = e
                    .downcast_ref::<wasmtime::WasmCoreDump>()
                    .map(|dump| dump.serialize(&mut store, &policy.name));
                Err(classify(&e, store.data(), &limits))
            }
        };
        finish(result, Some(store), core_dump)
    }
}

enum Interrupted {
    No(Response),
    Trap(wasmtime::Error),
    Deadline,
    Cancelled,
    Suspicious,
}

fn time_limit(timeout: Duration) -> Failure {
    Failure::Limit(Limit::Time, format!("stopped after {timeout:?}"))
}

/// Turns a guest failure into a typed outcome, from trap codes and the
/// limiter's own record: never from error message text.
fn classify(error: &wasmtime::Error, data: &StoreData, limits: &crate::policy::Limits) -> Failure {
    if let Some(suspicious) = error.downcast_ref::<Suspicious>() {
        return Failure::Suspicious(suspicious.0);
    }
    if let Some((limit, what)) = &data.limiter.exceeded {
        return Failure::Limit(*limit, what.clone());
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => Failure::Limit(
                Limit::Fuel,
                format!("used all {} units of fuel", limits.fuel),
            ),
            Trap::Interrupt => time_limit(limits.timeout),
            Trap::StackOverflow => Failure::Crashed("stack overflow".into()),
            Trap::UnreachableCodeReached => {
                Failure::Crashed("the plugin aborted (a panic or `unreachable`)".into())
            }
            Trap::MemoryOutOfBounds => Failure::Crashed("out-of-bounds memory access".into()),
            other => Failure::Crashed(format!("trap: {other}")),
        };
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Failure::Crashed(format!("the plugin exited with status {}", exit.0));
    }
    if error
        .downcast_ref::<wasmtime_wasi::ResourceTableError>()
        .is_some()
    {
        return Failure::Limit(
            Limit::Resources,
            format!("the plugin held more than {} open handles", caps::RESOURCES),
        );
    }
    Failure::Crashed(error.to_string())
}

/// The WASI context for one call: stdin empty, stdout/stderr capped sinks,
/// no args, no network, only the manifest's env and directories.
fn wasi_ctx(
    policy: &PluginPolicy,
    grants: bool,
    stdout: &CappedPipe,
    stderr: &CappedPipe,
) -> Result<WasiCtx, String> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if grants {
        for (key, value) in &policy.env {
            builder.env(key, value);
        }
        for dir in &policy.dirs {
            let perms = match dir.mode {
                DirMode::ReadOnly => FsPerms::ReadOnly,
                DirMode::ReadWrite => FsPerms::ReadWrite,
            };
            builder
                .preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| format!("cannot open granted directory `{}`: {e}", dir.guest))?;
        }
    }
    Ok(builder.build())
}
