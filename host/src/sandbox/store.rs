//! The host state of one store, that is of one call.
//!
//! [`StoreData`] is built fresh for every call (step 3 of the life in
//! `mod.rs`) and dropped when it ends, so nothing in it survives from one
//! call to the next. It holds the call's WASI context, its resource table
//! (bounded), its memory limiter, the log buffer, and both HTTP interfaces
//! pointed at the call's egress gate. The host functions that read and fill
//! it live beside their interfaces: `http.rs`, `log.rs`, `wasi_http.rs`.

use super::bindings::portcullis::tool::log::{Host as LogHost, Level};
use super::disk::DiskBudget;
use super::limits::Limiter;
use super::log::Logs;
use super::wasi_http;
use crate::egress::CallEgress;
use crate::policy::caps;
use crate::secrets::Scrubber;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Host state of one store (one call).
pub(crate) struct StoreData {
    /// Also read by the linker, for `wasi:random`.
    pub(super) wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: Limiter,
    /// What the call may still write and create through read-write grants
    /// (shared with the file streams it opens).
    pub(super) disk: Arc<DiskBudget>,
    pub(super) logs: Logs,
    pub(super) plugin: Arc<str>,
    pub(super) scrubber: Arc<Scrubber>,
    /// The call's egress gate; `None` without HTTP grants (and while
    /// listing tools), when every request is denied.
    pub(super) egress: Option<Arc<CallEgress>>,
    http: WasiHttpCtx,
    /// `wasi:http` requests go through `egress` too.
    http_hooks: wasi_http::GateHooks,
}

impl StoreData {
    /// The state of a new call of `plugin`: `wasi` as built for the call,
    /// at most `memory` bytes of linear memory in total, and every HTTP
    /// request through `egress`; writes to disk count against `disk`.
    pub(super) fn new(
        wasi: WasiCtx,
        plugin: Arc<str>,
        scrubber: Arc<Scrubber>,
        egress: Option<Arc<CallEgress>>,
        memory: u64,
        disk: DiskBudget,
    ) -> StoreData {
        let mut table = ResourceTable::new();
        table.set_max_capacity(caps::RESOURCES);
        StoreData {
            wasi,
            table,
            limiter: Limiter::new(memory),
            disk: Arc::new(disk),
            logs: Logs::default(),
            plugin,
            scrubber,
            http: {
                // Headers beyond the gate's own limit are refused by the
                // gate anyway; this bounds what a fields resource holds.
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(4 * caps::HTTP_HEADER_BYTES);
                http
            },
            http_hooks: wasi_http::GateHooks::new(egress.clone()),
            egress,
        }
    }
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

/// `portcullis:tool/log`: kept in the store's [`Logs`].
impl LogHost for StoreData {
    fn log(&mut self, level: Level, message: String) {
        self.logs.push(level, message, &self.plugin, &self.scrubber);
    }
}
