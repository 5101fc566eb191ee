//! One call in the sandbox, from a fresh store to the collected [`Run`].
//!
//! [`Sandbox::run`] reads as the steps listed in `mod.rs`, each a function
//! here or beside it: [`wasi_ctx`] (the call's WASI context),
//! [`Sandbox::new_store`] and [`bound`] (the store, its fuel, deadline and
//! transfer bound), [`call_with_deadline`] (instantiate and call, racing
//! cancellation, the gate and the clock), `settle.rs` (the typed outcome),
//! and [`Collector::finish`] (what the call leaves behind). The [`Ticker`]
//! that advances the engine's epoch, which the deadline is counted in, is
//! started once per engine.

use super::OpenDirs;
use super::disk::DiskBudget;
use super::settle::settle;
use super::stdio::{CappedPipe, Captured};
use super::store::StoreData;
use super::{Busy, LogRecord, PluginPre, Prepared, Sandbox, WitToolError, WitToolSpec};
use crate::egress::CallEgress;
use crate::error::{Error, Limit, ToolError};
use crate::policy::{Limits, PluginPolicy};
use crate::secrets::Scrubber;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// How often the engine's epoch advances: the granularity of deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What the sandbox is asked to run.
pub(crate) enum Invocation<'a> {
    /// `list-tools`, run without any grants.
    ListTools,
    /// `call(name, arguments)`, with the call's egress gate, prepared by
    /// the host (`None` for a plugin without HTTP grants: every request of
    /// the call is then denied).
    Call {
        tool: &'a str,
        arguments: &'a str,
        egress: Option<Arc<CallEgress>>,
    },
}

/// What a completed guest function returned.
pub(crate) enum Returned {
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
    /// Every instance slot stayed taken for the whole bounded wait.
    Busy(Busy),
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
            Failure::Busy(busy) => write!(
                f,
                "all {} instance slots stayed busy for {:?}",
                busy.slots, busy.waited
            ),
        }
    }
}

impl From<WitToolError> for ToolError {
    /// The tool's own error, as the plugin reported it.
    fn from(e: WitToolError) -> ToolError {
        match e {
            WitToolError::InvalidInput(m) => ToolError::InvalidInput(m),
            WitToolError::NotFound(m) => ToolError::NotFound(m),
            WitToolError::Denied(m) => ToolError::Denied(m),
            WitToolError::Internal(m) => ToolError::Internal(m),
        }
    }
}

impl Failure {
    /// The host's error for a call of `tool` that ended this way; `dumped`
    /// names the core dump, if any.
    pub(crate) fn into_error(self, tool: String, dumped: &str) -> Error {
        match self {
            Failure::Limit(limit, detail) => Error::LimitExceeded {
                tool,
                limit,
                detail: detail + dumped,
            },
            Failure::Crashed(reason) => Error::Crashed {
                tool,
                reason: reason + dumped,
            },
            Failure::Cancelled => Error::Cancelled { tool },
            Failure::Suspicious(denials) => Error::Suspicious { tool, denials },
            Failure::Setup(reason) => Error::Internal(format!("`{tool}`: {reason}")),
            Failure::Busy(busy) => Error::Busy {
                tool,
                slots: busy.slots,
                waited: busy.waited,
            },
        }
    }
}

/// Everything a run produced, whether or not it completed.
pub(crate) struct Run {
    pub(crate) result: Result<Returned, Failure>,
    pub(crate) stdout: Captured,
    pub(crate) stderr: Captured,
    pub(crate) logs: Vec<LogRecord>,
    pub(crate) logs_dropped: u64,
    /// A standard WebAssembly core dump of the store, when the guest
    /// trapped and the host captures them.
    pub(crate) core_dump: Option<Vec<u8>>,
    pub(crate) fuel_used: u64,
    pub(crate) duration: Duration,
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(super) struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub(super) fn start(engine: Engine) -> std::io::Result<Ticker> {
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

impl Sandbox {
    /// Runs `request` in a fresh instance under `policy`.
    pub(crate) async fn run(
        &self,
        prepared: &Prepared,
        policy: &PluginPolicy,
        request: Invocation<'_>,
        cancel: &CancellationToken,
    ) -> Run {
        // A slot first (held until the store is gone), so that the pool's
        // totals are never exhausted mid-call.
        let slot = self.slots.acquire().await;
        let started = Instant::now();
        let limits = policy.limits;
        let collector = Collector {
            started,
            limits,
            stdout: CappedPipe::new(limits.stdio, &self.scrubber),
            stderr: CappedPipe::new(limits.stdio, &self.scrubber),
            scrubber: &self.scrubber,
        };
        let _slot = match slot {
            Ok(permit) => permit,
            Err(busy) => return collector.finish(Err(Failure::Busy(busy)), None, None),
        };
        let grants = matches!(request, Invocation::Call { .. });
        let dirs = grants.then_some(&prepared.dirs);
        let io = Io {
            stdout: &collector.stdout,
            stderr: &collector.stderr,
        };
        let wasi = wasi_ctx(policy, dirs, &io);
        let deadline = started + limits.timeout;
        let plugin: Arc<str> = Arc::from(policy.name.as_str());
        let egress = match &request {
            Invocation::Call { egress, .. } => egress.clone(),
            Invocation::ListTools => None,
        };
        let stopped = egress.as_ref().map(|e| e.stopped().0.clone());
        let mut store = self.new_store(wasi, plugin, egress, limits);
        if let Err(e) = bound(&mut store, limits.fuel, deadline) {
            return collector.finish(Err(Failure::Setup(e.to_string())), Some(store), None);
        }
        let outcome = call_with_deadline(
            &prepared.pre,
            &mut store,
            request,
            cancel,
            stopped,
            deadline,
        )
        .await;
        let (result, core_dump) = settle(outcome, &mut store, policy);
        collector.finish(result, Some(store), core_dump)
    }

    /// Runs `list-tools` in a fresh instance with no grants: the tool list
    /// as the plugin declares it, or why it could not be read.
    pub(crate) async fn list_tools(
        &self,
        prepared: &Prepared,
        policy: &PluginPolicy,
    ) -> Result<Vec<WitToolSpec>, String> {
        let run = self
            .run(
                prepared,
                policy,
                Invocation::ListTools,
                &CancellationToken::new(),
            )
            .await;
        match run.result {
            Ok(Returned::Tools(specs)) => Ok(specs),
            Ok(_) => Err("`list-tools` produced a call response".into()),
            Err(failure) => Err(format!("`list-tools` failed: {failure}")),
        }
    }

    /// A fresh store for one call, its memory bounded by the limiter.
    fn new_store(
        &self,
        wasi: WasiCtx,
        plugin: Arc<str>,
        egress: Option<Arc<CallEgress>>,
        limits: Limits,
    ) -> Store<StoreData> {
        let data = StoreData::new(
            wasi,
            plugin,
            Arc::clone(&self.scrubber),
            egress,
            limits.memory,
            DiskBudget::new(limits.disk_write, u64::from(limits.disk_files)),
        );
        let mut store = Store::new(&self.engine, data);
        store.limiter(|data| &mut data.limiter);
        // Checked by wasmtime against each string and list length before
        // it copies guest memory into the host (the result included).
        store.set_hostcall_fuel(usize::try_from(limits.largest_transfer()).unwrap_or(usize::MAX));
        store
    }
}

/// Gives the store its `fuel`, and interrupts its guest code at `deadline`
/// (yielding to the executor every epoch tick until then, so that one call
/// cannot starve the others).
fn bound(store: &mut Store<StoreData>, fuel: u64, deadline: Instant) -> wasmtime::Result<()> {
    store.set_fuel(fuel)?;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if Instant::now() >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
    Ok(())
}

/// How the guest's part of a call ended.
pub(super) enum Interrupted {
    No(Returned),
    Trap(wasmtime::Error),
    Deadline,
    Cancelled,
    Suspicious,
}

/// Instantiates the plugin and calls `request`'s export, racing the
/// host's `cancel`, the gate's `stopped` and the `deadline`; the first to
/// end wins, in that order when several are ready.
async fn call_with_deadline(
    pre: &PluginPre<StoreData>,
    store: &mut Store<StoreData>,
    request: Invocation<'_>,
    cancel: &CancellationToken,
    stopped: Option<CancellationToken>,
    deadline: Instant,
) -> Interrupted {
    let guest = instantiate_and_call(pre, store, request);
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
}

/// A fresh instance of the plugin, and the export `request` names.
async fn instantiate_and_call(
    pre: &PluginPre<StoreData>,
    store: &mut Store<StoreData>,
    request: Invocation<'_>,
) -> wasmtime::Result<Returned> {
    let plugin = pre.instantiate_async(&mut *store).await?;
    let tool = plugin.portcullis_tool_tool();
    match request {
        Invocation::ListTools => tool.call_list_tools(&mut *store).await.map(Returned::Tools),
        Invocation::Call {
            tool: name,
            arguments,
            ..
        } => tool
            .call_call(&mut *store, name, arguments)
            .await
            .map(|r| match r {
                Ok(output) => Returned::Output(output),
                Err(e) => Returned::ToolError(e),
            }),
    }
}

/// Where a call's stdio goes. (Where its file operations run was decided
/// when the grants were opened: see `OpenDirs::open`.)
struct Io<'a> {
    stdout: &'a CappedPipe,
    stderr: &'a CappedPipe,
}

/// The WASI context for one call: stdin empty, stdout/stderr capped sinks,
/// no args, no network; with `dirs` (a call, not listing tools), the
/// manifest's env and the directories opened at load.
fn wasi_ctx(policy: &PluginPolicy, dirs: Option<&OpenDirs>, io: &Io<'_>) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(io.stdout.clone())
        .stderr(io.stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if dirs.is_some() {
        for (key, value) in &policy.env {
            builder.env(key, value);
        }
    }
    let mut wasi = builder.build();
    if let Some(dirs) = dirs {
        dirs.grant(&mut wasi);
    }
    wasi
}

/// What a run keeps outside the store, from its start to its end, and
/// turns into the [`Run`] however the call ended.
struct Collector<'a> {
    started: Instant,
    limits: Limits,
    stdout: CappedPipe,
    stderr: CappedPipe,
    /// The scrubber the host knew at load.
    scrubber: &'a Arc<Scrubber>,
}

/// What the store held that outlives it.
struct Leftovers {
    logs: Vec<LogRecord>,
    logs_dropped: u64,
    egress: Option<Arc<CallEgress>>,
    fuel_left: u64,
}

impl Collector<'_> {
    /// Closes the call (its gate, then its store, if it got that far) and
    /// gathers what it produced, rescrubbed with any secret value the call
    /// fetched that the host did not know at load.
    fn finish(
        self,
        result: Result<Returned, Failure>,
        store: Option<Store<StoreData>>,
        core_dump: Option<Vec<u8>>,
    ) -> Run {
        let Leftovers {
            mut logs,
            logs_dropped,
            egress,
            fuel_left,
        } = match store {
            Some(store) => close(store),
            None => Leftovers {
                logs: Vec::new(),
                logs_dropped: 0,
                egress: None,
                fuel_left: self.limits.fuel,
            },
        };
        let scrubber = egress
            .as_deref()
            .map(CallEgress::scrubber)
            .filter(|s| !Arc::ptr_eq(s, self.scrubber));
        let (mut stdout, mut stderr) = (self.stdout.take(), self.stderr.take());
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
            core_dump,
            fuel_used: self.limits.fuel.saturating_sub(fuel_left),
            duration: self.started.elapsed(),
        }
    }
}

/// Takes what outlives the store out of it, closes the call's gate and
/// drops the store.
fn close(mut store: Store<StoreData>) -> Leftovers {
    let fuel_left = store.get_fuel().unwrap_or(0);
    let data = store.data_mut();
    let leftovers = Leftovers {
        logs: std::mem::take(&mut data.logs.records),
        logs_dropped: data.logs.dropped,
        egress: data.egress.clone(),
        fuel_left,
    };
    // Nothing more may leave: the gate closes, and dropping the store
    // aborts any `wasi:http` request still under way (its record was
    // written before it could send).
    if let Some(egress) = &leftovers.egress {
        egress.close();
    }
    drop(store);
    leftovers
}

#[cfg(test)]
mod tests {
    use super::super::settle::classify;
    use super::*;

    /// A component whose `run` asks `wasi:random` for 2^64 - 1 bytes.
    const RANDOM_FLOOD: &str = r#"(component
      (import "wasi:random/random@0.2.6" (instance $r
        (export "get-random-bytes" (func (param "len" u64) (result (list u8))))))
      (core module $libc
        (memory (export "mem") 1)
        (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 64))
      (core instance $libc (instantiate $libc))
      (alias export $r "get-random-bytes" (func $grb))
      (alias core export $libc "mem" (core memory $mem))
      (alias core export $libc "realloc" (core func $realloc))
      (core func $get (canon lower (func $grb) (memory $mem) (realloc $realloc)))
      (core module $m
        (import "" "get" (func $get (param i64 i32)))
        (func (export "run") (call $get (i64.const -1) (i32.const 0))))
      (core instance $i (instantiate $m (with "" (instance (export "get" (func $get))))))
      (alias core export $i "run" (core func $run))
      (func (export "run") (canon lift (core func $run))))"#;

    #[tokio::test]
    async fn a_trap_inside_a_host_call_says_why() {
        let sandbox = Sandbox::new().expect("sandbox");
        let bytes = wat::parse_str(RANDOM_FLOOD).expect("wat");
        let component = sandbox.compile(&bytes).expect("compiles");
        let limits = Limits::default();
        let mut store = sandbox.new_store(
            WasiCtxBuilder::new().build(),
            Arc::from("flood"),
            None,
            limits,
        );
        bound(&mut store, limits.fuel, Instant::now() + limits.timeout).expect("bound");
        let instance = sandbox
            .linker
            .instantiate_async(&mut store, &component)
            .await
            .expect("instantiates");
        let run = instance
            .get_typed_func::<(), ()>(&mut store, "run")
            .expect("exported");
        let error = run.call_async(&mut store, ()).await.expect_err("traps");
        let failure = classify(&error, store.data(), &limits);
        let Failure::Crashed(reason) = failure else {
            panic!("expected a crash, got {failure:?}");
        };
        assert!(reason.contains("exceeds limit"), "{reason}");
        assert!(reason.starts_with("a host call failed"), "{reason}");
        assert!(!reason.contains("wasm backtrace"), "{reason}");
    }
}
