//! One call in the sandbox, from a fresh store to the collected [`Run`]:
//! the call's types, [`Sandbox::run`], the classification of failures and
//! the call's WASI context. The [`Ticker`] that advances the engine's
//! epoch, which the deadline is counted in, is started once per engine.

use super::stdio::{CappedPipe, Captured};
use super::store::StoreData;
use super::{LogRecord, PluginPre, Sandbox, WitToolError, WitToolSpec};
use crate::egress::{CallEgress, CallFacts, EgressRecord, Network, PluginGrants, Suspicious};
use crate::error::Limit;
use crate::policy::{DirMode, Limits, PluginPolicy, caps};
use crate::secrets::Scrubber;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// How often the engine's epoch advances: the granularity of deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

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
        let mut store = Store::new(
            &self.engine,
            StoreData::new(
                wasi,
                Arc::clone(&plugin),
                Arc::clone(&self.scrubber),
                egress,
                limits.memory,
            ),
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
fn classify(error: &wasmtime::Error, data: &StoreData, limits: &Limits) -> Failure {
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
