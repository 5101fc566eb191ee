//! How much a Portcullis call costs over the raw wasmtime floor, measured
//! side by side in one run (ratios, not absolute times, are what to
//! compare on a shared machine). Prints the Markdown table of
//! `BENCHMARKS.md`.
//!
//! ```sh
//! plugins/build.sh && cargo run --release --example bench -- --markdown
//! cargo run --release --example bench -- --quick     # fewer iterations
//! ```
//!
//! - `raw floor (pooled)`: what any wasmtime host pays at least, with the
//!   same pooling allocator settings and engine as the host (keep-resident
//!   slots), minus our checks: a fresh store and WASI context, instantiate
//!   the pre-instantiated component, call one export, drop. No fuel, no
//!   epochs, no limiter.
//! - `raw (on-demand)`: the same without the pool, for reference.
//! - `Host::call ...`: the same tool through Portcullis: argument
//!   validation, approval check, a fresh bounded store (fuel, epoch
//!   deadline, memory limiter, capped stdio), the call, output checks,
//!   audit when configured.
//!
//! Rows that need the MCP server, HTTP and the 500-in-flight row come with
//! their issues; see `BENCHMARKS.md`.

use portcullis::{
    ApprovalRequest, Approver, CallContext, Decision, DirMode, FileSink, Host, PluginConfig,
    sha256_hex,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod raw {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        imports: { "portcullis:tool/http.send": async | trappable },
        exports: { default: async },
    });
}

struct Raw {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Raw {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl raw::portcullis::tool::log::Host for Raw {
    fn log(&mut self, _level: raw::portcullis::tool::log::Level, _message: String) {}
}

/// The pool the host builds by default (`host/src/sandbox/pool.rs`): 64
/// slots, 64 MiB memories, 2 MiB of each memory kept resident.
fn host_pool() -> PoolingAllocationConfig {
    let slots = 64;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 32)
        .total_memories(slots * 4)
        .total_tables(slots * 16)
        .total_stacks(slots)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_memory_size(64 << 20)
        .table_elements(100_000)
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(256 << 10)
        .async_stack_keep_resident(256 << 10);
    pool
}

/// A floor host: the engine the host uses (component model, bounded wasm
/// stack, the pool or not), minus fuel, epochs and the limiter.
struct Floor {
    engine: Engine,
    pre: raw::PluginPre<Raw>,
}

impl Floor {
    fn new(bytes: &[u8], pooled: bool) -> wasmtime::Result<Floor> {
        let mut config = Config::new();
        config.wasm_component_model(true).max_wasm_stack(512 * 1024);
        if pooled {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(host_pool()));
        }
        let engine = Engine::new(&config)?;
        let component = Component::from_binary(&engine, bytes)?;
        let mut linker = Linker::<Raw>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        raw::portcullis::tool::log::add_to_linker::<Raw, wasmtime::component::HasSelf<Raw>>(
            &mut linker,
            |r| r,
        )?;
        let pre = raw::PluginPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Floor { engine, pre })
    }

    async fn call(&self, tool: &str, args: &str) {
        let mut store = Store::new(
            &self.engine,
            Raw {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        let plugin = self
            .pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        let out = plugin
            .portcullis_tool_tool()
            .call_call(&mut store, tool, args)
            .await
            .expect("call");
        assert!(out.is_ok());
    }
}

/// Approves every call (the approval row).
struct AutoApprove;

impl Approver for AutoApprove {
    fn decide(&self, request: &ApprovalRequest) -> Decision {
        request.approve_by("bench")
    }
}

/// One row of the table.
struct Row {
    what: String,
    p50: Duration,
    p95: Duration,
    p99: Duration,
    per_second: f64,
}

struct Bench {
    iterations: usize,
    rows: Vec<Row>,
    floor_p50: Option<Duration>,
    notes: Vec<String>,
}

impl Bench {
    /// Measures `call` `iterations` times one after another (after a warm-up).
    async fn latency<F, Fut>(&mut self, what: &str, mut call: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        for _ in 0..self.iterations / 10 {
            call().await;
        }
        let mut times = Vec::with_capacity(self.iterations);
        let start = Instant::now();
        for _ in 0..self.iterations {
            let t = Instant::now();
            call().await;
            times.push(t.elapsed());
        }
        let total = start.elapsed();
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        let row = Row {
            what: what.to_string(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            per_second: self.iterations as f64 / total.as_secs_f64(),
        };
        if self.floor_p50.is_none() {
            self.floor_p50 = Some(row.p50);
        }
        eprintln!("measured {what}");
        self.rows.push(row);
    }

    /// Calls/s with `tasks` tasks calling at once on the multi-thread
    /// runtime, `per_task` calls each.
    async fn throughput<F, Fut>(&mut self, what: &str, tasks: usize, call: F) -> f64
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let per_task = self.iterations;
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let call = call.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        call().await;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
        let rate = (tasks * per_task) as f64 / start.elapsed().as_secs_f64();
        eprintln!("measured {what}");
        rate
    }

    fn markdown(&self) -> String {
        let floor = self.floor_p50.map_or(1.0, |d| d.as_secs_f64());
        let us = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6);
        let mut out = String::from(
            "| what | p50 µs | p95 µs | p99 µs | calls/s | p50 / floor |\n|---|---:|---:|---:|---:|---:|\n",
        );
        for row in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {:.2}x |\n",
                row.what,
                us(row.p50),
                us(row.p95),
                us(row.p99),
                row.per_second,
                row.p50.as_secs_f64() / floor
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("\n{note}\n"));
        }
        out
    }
}

/// Resident set size and its peak, in MiB, from `/proc/self/status`.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn plugin(name: &str) -> Result<(PathBuf, Vec<u8>), String> {
    let path = PathBuf::from(format!("plugins/dist/{name}.wasm"));
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("{}: {e} (run `plugins/build.sh` first)", path.display()))?;
    Ok((path, bytes))
}

fn config(name: &str, path: &Path, bytes: &[u8]) -> PluginConfig {
    PluginConfig::new(name, path).sha256(sha256_hex(bytes))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut bench = Bench {
        iterations: if quick { 500 } else { 5_000 },
        rows: Vec::new(),
        floor_p50: None,
        notes: Vec::new(),
    };
    let (hostile_path, hostile) = plugin("hostile")?;
    let (refunds_path, refunds) = plugin("refunds")?;
    let scratch = tempfile::tempdir()?;
    std::fs::write(scratch.path().join("a.txt"), "a")?;

    // The floor first: every ratio is against it.
    let floor = Arc::new(Floor::new(&hostile, true)?);
    bench
        .latency(
            "raw floor: wasmtime, pooled, fresh instance + `echo`",
            || floor.call("echo", "{}"),
        )
        .await;
    let unpooled = Floor::new(&hostile, false)?;
    bench
        .latency("raw wasmtime, on-demand allocator", || {
            unpooled.call("echo", "{}")
        })
        .await;

    let plain = Host::builder()
        .plugin(config("hostile", &hostile_path, &hostile))
        .build()
        .await?;
    let ctx = CallContext::new();
    bench
        .latency("`Host::call`, no grants", || async {
            plain.call("hostile.echo", "{}", &ctx).await.expect("call");
        })
        .await;

    let audit_path = scratch.path().join("audit.jsonl");
    let dir_audit = Host::builder()
        .audit(FileSink::open(&audit_path)?)
        .approver(AutoApprove)
        .plugin(config("hostile", &hostile_path, &hostile).dir(
            scratch.path(),
            "/data",
            DirMode::ReadOnly,
        ))
        .build()
        .await?;
    bench
        .latency(
            "`Host::call`, one read-only directory + audit file sink",
            || async {
                dir_audit
                    .call("hostile.echo", "{}", &ctx)
                    .await
                    .expect("call");
            },
        )
        .await;
    bench
        .latency(
            "`Host::call` listing that directory (`hostile.list`), + audit",
            || async {
                dir_audit
                    .call("hostile.list", r#"{"path": "/data"}"#, &ctx)
                    .await
                    .expect("call");
            },
        )
        .await;

    let fsync_path = scratch.path().join("audit-fsync.jsonl");
    let fsynced = Host::builder()
        .audit(FileSink::open(&fsync_path)?.fsync(true))
        .plugin(config("hostile", &hostile_path, &hostile))
        .build()
        .await?;
    bench
        .latency("`Host::call`, audit file sink with fsync", || async {
            fsynced
                .call("hostile.echo", "{}", &ctx)
                .await
                .expect("call");
        })
        .await;

    let approving = Host::builder()
        .approver(AutoApprove)
        .plugin(config("refunds", &refunds_path, &refunds))
        .build()
        .await?;
    bench
        .latency(
            "`Host::call`, approval-gated tool, auto-approver",
            || async {
                approving
                    .call(
                        "refunds.refund",
                        r#"{"order_id": "A-1", "amount": 500}"#,
                        &ctx,
                    )
                    .await
                    .expect("call");
            },
        )
        .await;

    // Throughput: one task, then two, on the 2-worker runtime.
    let floor_one = {
        let floor = Arc::clone(&floor);
        bench
            .throughput("floor, 1 task", 1, move || {
                let floor = Arc::clone(&floor);
                async move { floor.call("echo", "{}").await }
            })
            .await
    };
    let floor_two = {
        let floor = Arc::clone(&floor);
        bench
            .throughput("floor, 2 tasks", 2, move || {
                let floor = Arc::clone(&floor);
                async move { floor.call("echo", "{}").await }
            })
            .await
    };
    let host_call = |host: Host| {
        move || {
            let host = host.clone();
            async move {
                host.call("hostile.echo", "{}", &CallContext::new())
                    .await
                    .expect("call");
            }
        }
    };
    let host_one = bench
        .throughput("host, 1 task", 1, host_call(plain.clone()))
        .await;
    let host_two = bench
        .throughput("host, 2 tasks", 2, host_call(plain.clone()))
        .await;
    bench.notes.push(format!(
        "Throughput on a 2-worker runtime, calls/s with 1 task -> 2 tasks: raw floor {floor_one:.0} -> {floor_two:.0} ({:.2}x); `Host::call` (no grants) {host_one:.0} -> {host_two:.0} ({:.2}x).",
        floor_two / floor_one,
        host_two / host_one
    ));

    // RSS over many sequential calls.
    let calls = if quick { 10_000 } else { 100_000 };
    let mut after_10k = (0.0, 0.0);
    for i in 1..=calls {
        plain.call("hostile.echo", "{}", &ctx).await.expect("call");
        if i == calls / 10 {
            after_10k = rss_mib();
        }
    }
    let end = rss_mib();
    bench.notes.push(format!(
        "RSS over {calls} sequential calls: {:.1} MiB after {}, {:.1} MiB after {calls} ({:+.1}%); peak {:.1} MiB.",
        after_10k.0,
        calls / 10,
        end.0,
        (end.0 / after_10k.0 - 1.0) * 100.0,
        end.1
    ));

    // Cold start: loading a plugin compiled before (compile cache warm).
    let cache = scratch.path().join("cache");
    let build = || {
        Host::builder()
            .compile_cache(&cache)
            .plugin(config("hostile", &hostile_path, &hostile))
            .build()
    };
    build().await?;
    let start = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        build().await?;
    }
    bench.notes.push(format!(
        "Building a host with one cached plugin (`hostile`, {} KiB; compile cache warm, pool reserved, tool list read): {:.2} ms.",
        hostile.len() / 1024,
        start.elapsed().as_secs_f64() * 1e3 / f64::from(rounds)
    ));

    println!(
        "{} calls per row, fresh instance per call, 2-worker tokio runtime\n",
        bench.iterations
    );
    println!("{}", bench.markdown());
    Ok(())
}
