//! The typed outcome of the guest's part of a call: [`settle`] turns how
//! the call ended (returned, trapped, ran out of time, was cancelled or
//! stopped by the gate) into a [`Returned`] or a [`Failure`], with
//! [`classify`] reading trap codes and the limiters' own records, never
//! error text a plugin could write. Called by `run.rs` once the guest is
//! done.

use super::Returned;
use super::run::{Failure, Interrupted};
use super::store::StoreData;
use crate::egress::Suspicious;
use crate::error::Limit;
use crate::policy::{Limits, PluginPolicy, caps};
use std::time::Duration;
use wasmtime::{Store, Trap};

/// The typed result of the guest's part of a call, and the store's core
/// dump when the guest trapped and the engine captures them.
pub(super) fn settle(
    outcome: Interrupted,
    store: &mut Store<StoreData>,
    policy: &PluginPolicy,
) -> (Result<Returned, Failure>, Option<Vec<u8>>) {
    let limits = &policy.limits;
    let mut core_dump = None;
    let result = match outcome {
        Interrupted::No(Returned::Output(output)) if output.len() as u64 > limits.output => {
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
                .map(|dump| dump.serialize(&mut *store, &policy.name));
            Err(classify(&e, store.data(), limits))
        }
    };
    (result, core_dump)
}

/// Whether wasmtime refused to copy a string or list out of guest memory
/// because it was longer than the store's transfer bound
/// ([`Limits::largest_transfer`]). Wasmtime's error type for it is
/// private, so it is recognised by its type name (`Debug` of a unit
/// struct), never by text a plugin could write; the test
/// `limits::an_output_over_every_limit_is_refused_before_it_is_copied`
/// fails if a wasmtime upgrade renames it.
fn is_transfer_refused(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|cause| format!("{cause:?}") == "HostcallFuelExhausted")
}

pub(super) fn time_limit(timeout: Duration) -> Failure {
    Failure::Limit(Limit::Time, format!("stopped after {timeout:?}"))
}

/// Turns a guest failure into a typed outcome, from trap codes and the
/// limiter's own record: never from error message text.
pub(super) fn classify(error: &wasmtime::Error, data: &StoreData, limits: &Limits) -> Failure {
    if let Some(suspicious) = error.downcast_ref::<Suspicious>() {
        return Failure::Suspicious(suspicious.0);
    }
    if let Some((limit, what)) = &data.limiter.exceeded {
        return Failure::Limit(*limit, what.clone());
    }
    if let Some((limit, what)) = data.disk.exceeded() {
        return Failure::Limit(limit, what);
    }
    if is_transfer_refused(error) {
        return Failure::Limit(
            Limit::Output,
            format!(
                "the plugin handed the host more than {} bytes at once (its output, or one \
                 request or message); the output limit is {} bytes",
                limits.largest_transfer(),
                limits.output
            ),
        );
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
    Failure::Crashed(crash_reason(error))
}

/// Why a call failed that no trap code or limit explains: usually a host
/// function that refused the guest's request (e.g. `get-random-bytes` asked
/// for 2^64 bytes). wasmtime's own message is only "error while executing
/// at wasm backtrace"; the causes below it say why. The backtrace itself is
/// left out (it names guest internals, not the cause).
fn crash_reason(error: &wasmtime::Error) -> String {
    let causes: Vec<String> = error
        .chain()
        .map(ToString::to_string)
        .filter(|text| !text.starts_with("error while executing at wasm backtrace"))
        .collect();
    match causes.as_slice() {
        [] => error.to_string(),
        [only] if error.chain().count() == 1 => only.clone(),
        causes => format!("a host call failed: {}", causes.join(": ")),
    }
}
