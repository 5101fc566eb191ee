//! How much a Portcullis call costs over the raw wasmtime floor, measured
//! side by side in one run (ratios, not absolute times, are what to
//! compare on a shared machine). Prints the Markdown table of
//! `BENCHMARKS.md`.
//!
//! ```sh
//! plugins/build.sh && cargo run --release --example bench -- --markdown
//! cargo run --release --example bench -- --quick     # fewer iterations
//! cargo run --release --example bench -- --languages # Python/JS rows only
//! cargo run --release --example bench -- --mcp       # MCP rows only
//! cargo run --release --example bench -- --http      # HTTP rows only
//! cargo run --release --example bench -- --grants    # directory/audit rows only
//! cargo run --release --example bench -- --grants --row 'audit file sink' --iterations 100000
//!                                                    # one row (and the floor), to profile it
//! cargo run --release --example bench -- --in-flight # the 500-in-flight row only
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
//! - The grant rows again, interleaved with the floor (turns of 100 calls
//!   each): the ratios the targets are about, with the machine's drift
//!   between rows cancelled out.
//!
//! - `json.query` over a ~900 KiB document: the CPU-heavy row, raw
//!   unmetered against raw with fuel and epochs (the host's metering),
//!   and through `Host::call`.
//! - `hostile.write` of 4 KiB into a read-write grant: the disk budget's
//!   cost per write (floor with the same preopen, no budget).
//! - 500 calls in flight, each waiting on a slow loopback endpoint: peak
//!   RSS, all complete (`bench/flight.rs`, in a child process of its own,
//!   so that the peak is not the other rows').
//! - Cold start: `portcullis tools plugins/portcullis.toml` with a warm
//!   compile cache, process wall time (needs `cargo build --release`).
//! - File I/O on a grant (`bench/io.rs`): `files.search` over 1,000 files
//!   and a one-file listing, in place (the default) and on blocking
//!   threads.
//! - HTTP through the egress gate (`bench/io.rs`): ten requests per call,
//!   on a kept-alive connection and on a new connection each, against a
//!   kept-alive hyper connection from the host process.
//! - MCP: `tools/call` over stdio and Streamable HTTP against
//!   `Host::call`, and `portcullis serve` to its first `tools/list`
//!   (`bench/mcp.rs`).

use portcullis::{
    ApprovalRequest, Approver, AuditSink, CallContext, Decision, DirMode, FileSink, Host,
    PluginConfig, sha256_hex,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

#[path = "bench/flight.rs"]
mod flight;
#[path = "bench/io.rs"]
mod io;
#[path = "bench/languages.rs"]
mod languages;
#[path = "bench/mcp.rs"]
mod mcp;

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
    /// Fuel and epochs as the host sets them (the metering row).
    metered: bool,
    /// A directory preopened read-write at `/rw` for every call.
    rw: Option<PathBuf>,
}

impl Floor {
    fn new(bytes: &[u8], pooled: bool) -> wasmtime::Result<Floor> {
        Floor::with(bytes, pooled, false, None)
    }

    fn with(
        bytes: &[u8],
        pooled: bool,
        metered: bool,
        rw: Option<PathBuf>,
    ) -> wasmtime::Result<Floor> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .max_wasm_stack(512 * 1024)
            .consume_fuel(metered)
            .epoch_interruption(metered);
        if pooled {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(host_pool()));
        }
        let engine = Engine::new(&config)?;
        if metered {
            // The host's ticker: the epoch advances every 10 ms.
            let ticking = engine.clone();
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(10));
                    ticking.increment_epoch();
                }
            });
        }
        let component = Component::from_binary(&engine, bytes)?;
        let mut linker = Linker::<Raw>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        raw::portcullis::tool::log::add_to_linker::<Raw, wasmtime::component::HasSelf<Raw>>(
            &mut linker,
            |r| r,
        )?;
        let pre = raw::PluginPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Floor {
            engine,
            pre,
            metered,
            rw,
        })
    }

    async fn call(&self, tool: &str, args: &str) {
        let mut wasi = WasiCtx::builder();
        if let Some(rw) = &self.rw {
            wasi.preopened_dir(rw, "/rw", FsPerms::ReadWrite)
                .expect("preopen");
        }
        let mut store = Store::new(
            &self.engine,
            Raw {
                wasi: wasi.build(),
                table: ResourceTable::new(),
            },
        );
        if self.metered {
            store.set_fuel(1_000_000_000).expect("fuel");
            store.set_epoch_deadline(1);
            store.epoch_deadline_async_yield_and_update(1);
        }
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
    /// `--row TEXT`: only rows whose title contains TEXT are measured
    /// (the floor row always is), e.g. to profile one of them.
    only: Option<String>,
    rows: Vec<Row>,
    floor_p50: Option<Duration>,
    notes: Vec<String>,
}

impl Bench {
    /// A row of `host` calling `hostile.echo` with `{}`: the call the
    /// grant, audit and MCP rows compare.
    async fn echo(&mut self, what: &str, host: &Host) -> Duration {
        let ctx = CallContext::new();
        self.latency(what, || async {
            host.call("hostile.echo", "{}", &ctx).await.expect("call");
        })
        .await
    }

    /// Measures `call` `iterations` times one after another (after a warm-up).
    async fn latency<F, Fut>(&mut self, what: &str, call: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        self.latency_n(what, self.iterations, call).await
    }

    /// Measures `call` `iterations` times one after another (after a
    /// warm-up); returns the row's p50.
    async fn latency_n<F, Fut>(&mut self, what: &str, iterations: usize, mut call: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        if self.floor_p50.is_some()
            && self
                .only
                .as_ref()
                .is_some_and(|only| !what.contains(only.as_str()))
        {
            return Duration::ZERO;
        }
        for _ in 0..iterations.div_ceil(10) {
            call().await;
        }
        let mut times = Vec::with_capacity(iterations);
        let start = Instant::now();
        for _ in 0..iterations {
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
            per_second: iterations as f64 / total.as_secs_f64(),
        };
        if self.floor_p50.is_none() {
            self.floor_p50 = Some(row.p50);
        }
        eprintln!("measured {what}");
        let p50 = row.p50;
        self.rows.push(row);
        p50
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

/// `json.query` arguments: a document of about 900 KiB and a path that
/// walks all of it and matches nothing.
fn big_query() -> String {
    let mut items = Vec::new();
    let mut size = 0;
    let mut i = 0u64;
    while size < 900 * 1024 {
        let item = serde_json::json!({
            "id": i,
            "name": format!("item-{i}"),
            "tags": ["alpha", "beta", "gamma"],
            "price": i as f64 * 1.5,
            "nested": { "ok": i.is_multiple_of(2), "level": [1, 2, 3] },
        });
        size += item.to_string().len() + 1;
        items.push(item);
        i += 1;
    }
    serde_json::json!({ "value": { "items": items }, "path": "$..nothing" }).to_string()
}

/// A read-only directory and an audit file sink, each alone and together:
/// where the cost of a call with grants goes. `--grants` runs only these
/// (after the floor and the no-grant row), e.g. to profile them.
async fn grant_rows(
    bench: &mut Bench,
    floor: &Floor,
    plain: &Host,
    hostile_path: &Path,
    hostile: &[u8],
    scratch: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let ctx = CallContext::new();
    let dir_only = Host::builder()
        .plugin(config("hostile", hostile_path, hostile).dir(scratch, "/data", DirMode::ReadOnly))
        .build()
        .await?;
    bench
        .echo("`Host::call`, one read-only directory", &dir_only)
        .await;
    let audit_only = Host::builder()
        .audit(FileSink::open(scratch.join("audit-only.jsonl"))?)
        .plugin(config("hostile", hostile_path, hostile))
        .build()
        .await?;
    bench
        .echo("`Host::call`, audit file sink", &audit_only)
        .await;
    let audit_path = scratch.join("audit.jsonl");
    let dir_audit = Host::builder()
        .audit(FileSink::open(&audit_path)?)
        .approver(AutoApprove)
        .plugin(config("hostile", hostile_path, hostile).dir(scratch, "/data", DirMode::ReadOnly))
        .build()
        .await?;
    bench
        .echo(
            "`Host::call`, one read-only directory + audit file sink",
            &dir_audit,
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
    if bench.only.is_none() {
        let sink_io = SinkIo::like(&scratch.join("audit-only.jsonl"), scratch)?;
        interleaved(
            bench,
            floor,
            &sink_io,
            &[
                ("no grants", plain),
                ("one read-only directory", &dir_only),
                ("audit file sink", &audit_only),
                ("one read-only directory + audit file sink", &dir_audit),
            ],
        )
        .await;
    }
    Ok(())
}

/// The floor, the floor followed by `sink_io`'s records, and `hosts`
/// (each calling `hostile.echo`) measured again in turns of [`BATCH`] calls
/// each, so that a slow or noisy spell of the machine falls on every one of
/// them alike: the ratios to the floor that the targets are about, without
/// the drift between rows measured minutes apart.
async fn interleaved(bench: &mut Bench, floor: &Floor, sink_io: &SinkIo, hosts: &[(&str, &Host)]) {
    /// Calls of one in a row before the next one's turn.
    const BATCH: usize = 100;
    let ctx = CallContext::new();
    let mut floor_times = Vec::with_capacity(bench.iterations);
    let mut io_times = Vec::with_capacity(bench.iterations);
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(bench.iterations); hosts.len()];
    for round in 0..=bench.iterations.div_ceil(BATCH) {
        // Round 0 warms every one up and is not counted.
        let counted = round > 0;
        for _ in 0..BATCH {
            let t = Instant::now();
            floor.call("echo", "{}").await;
            if counted {
                floor_times.push(t.elapsed());
            }
        }
        for _ in 0..BATCH {
            let t = Instant::now();
            floor.call("echo", "{}").await;
            sink_io.append();
            if counted {
                io_times.push(t.elapsed());
            }
        }
        for ((_, host), times) in hosts.iter().zip(&mut times) {
            for _ in 0..BATCH {
                let t = Instant::now();
                host.call("hostile.echo", "{}", &ctx).await.expect("call");
                if counted {
                    times.push(t.elapsed());
                }
            }
        }
    }
    let p50 = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let floor_p50 = p50(&mut floor_times);
    let io_p50 = p50(&mut io_times);
    let rows: Vec<String> = hosts
        .iter()
        .zip(&mut times)
        .map(|((what, _), times)| {
            let row = p50(times);
            format!(
                "{what} {:.1} µs (**{:.2}x**)",
                row.as_secs_f64() * 1e6,
                row.as_secs_f64() / floor_p50.as_secs_f64()
            )
        })
        .collect();
    eprintln!("measured the grant rows interleaved with the floor");
    bench.notes.push(format!(
        "Interleaved with the floor (`Host::call` of `hostile.echo`; the floor and each host in turn, {BATCH} calls at a time, {} calls each), p50 and ratio to the floor: floor {:.1} µs; {}. The audit file sink's own writing of a call's two records ({} and {} bytes; `flock`, `lseek`, `write(2)` and unlock each), made by a `FileSink` after each floor call with no host: {:.1} µs (**{:.2}x**).",
        floor_times.len(),
        floor_p50.as_secs_f64() * 1e6,
        rows.join("; "),
        sink_io.lines[0].len(),
        sink_io.lines[1].len(),
        io_p50.as_secs_f64() * 1e6,
        io_p50.as_secs_f64() / floor_p50.as_secs_f64(),
    ));
}

/// The audit file sink writing one call's two records (`call_started`,
/// `call_ended`) as the host's writer has it do, with no host around it:
/// the part of an audit row that no host code can take away while each
/// record is written before what it records, under the lock of a file
/// shared by processes.
struct SinkIo {
    sink: FileSink,
    lines: [String; 2],
}

impl SinkIo {
    /// A sink on a scratch file in `scratch`, writing copies of the last
    /// two records of the audit log at `log`.
    fn like(log: &Path, scratch: &Path) -> std::io::Result<SinkIo> {
        let text = std::fs::read_to_string(log)?;
        let mut records = text.lines().rev().filter(|line| !line.is_empty());
        let (Some(ended), Some(started)) = (records.next(), records.next()) else {
            return Err(std::io::Error::other("the audit log holds no call yet"));
        };
        Ok(SinkIo {
            sink: FileSink::open(scratch.join("sink-io.jsonl"))?,
            lines: [started.to_string(), ended.to_string()],
        })
    }

    /// Each record as a batch of its own: lock (and look at the tail),
    /// write, unlock.
    fn append(&self) {
        for line in &self.lines {
            self.sink.lock_tail().expect("lock");
            self.sink
                .write_batch(std::slice::from_ref(line))
                .expect("write");
            self.sink.unlock();
        }
    }
}

/// The `portcullis` binary of the same build, beside the examples' folder.
fn portcullis_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("portcullis"))
        .filter(|p| p.exists())
}

/// `portcullis tools plugins/portcullis.toml` with a warm compile cache:
/// process wall time, median of 10 runs after one warm-up run.
fn cold_start(bench: &mut Bench) -> Result<(), Box<dyn std::error::Error>> {
    let Some(binary) = portcullis_binary() else {
        bench.notes.push(
            "Cold start: skipped, no `portcullis` binary beside the examples (run `cargo build --release` first).".into(),
        );
        return Ok(());
    };
    let run = || -> Result<Duration, Box<dyn std::error::Error>> {
        let start = Instant::now();
        let status = std::process::Command::new(&binary)
            .args(["tools", "plugins/portcullis.toml"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        let wall = start.elapsed();
        if !status.success() {
            return Err(format!("`portcullis tools` exited with {status}").into());
        }
        Ok(wall)
    };
    run()?;
    let mut walls = (0..10).map(|_| run()).collect::<Result<Vec<_>, _>>()?;
    walls.sort();
    bench.notes.push(format!(
        "Cold start: `portcullis tools plugins/portcullis.toml` (compile cache warm), process wall time, median of 10: {:.1} ms (min {:.1}, max {:.1}).",
        walls[5].as_secs_f64() * 1e3,
        walls[0].as_secs_f64() * 1e3,
        walls[9].as_secs_f64() * 1e3
    ));
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut bench = Bench {
        // `--iterations N` sets the calls per row (e.g. longer, to profile).
        iterations: args
            .iter()
            .position(|a| a == "--iterations")
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(if quick { 500 } else { 5_000 })
            // At least one call per row: a percentile of nothing is no figure.
            .max(1),
        only: args
            .iter()
            .position(|a| a == "--row")
            .and_then(|i| args.get(i + 1))
            .cloned(),
        rows: Vec::new(),
        floor_p50: None,
        notes: Vec::new(),
    };
    // `--languages`: only the Python and JavaScript rows (bench/languages.rs).
    if args.iter().any(|a| a == "--languages") {
        languages::run(&mut bench, quick).await?;
        println!("{}", bench.markdown());
        return Ok(());
    }
    // `--in-flight`: only the calls-in-flight row, in a process of its own
    // (bench/flight.rs), so that its peak RSS is the burst's.
    if args.iter().any(|a| a == "--in-flight") {
        flight::in_flight(&mut bench, quick).await?;
        for note in &bench.notes {
            println!("{note}");
        }
        return Ok(());
    }
    // `--http`: only the HTTP rows (bench/io.rs), e.g. to profile them.
    if args.iter().any(|a| a == "--http") {
        io::http(&mut bench, quick).await?;
        println!("{}", bench.markdown());
        return Ok(());
    }
    // `--mcp`: only the MCP rows (bench/mcp.rs), e.g. to profile them.
    if args.iter().any(|a| a == "--mcp") {
        mcp::rows(&mut bench).await?;
        println!("{}", bench.markdown());
        return Ok(());
    }
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
    bench.echo("`Host::call`, no grants", &plain).await;

    grant_rows(
        &mut bench,
        &floor,
        &plain,
        &hostile_path,
        &hostile,
        scratch.path(),
    )
    .await?;
    if args.iter().any(|a| a == "--grants") {
        println!("{}", bench.markdown());
        return Ok(());
    }

    let fsync_path = scratch.path().join("audit-fsync.jsonl");
    let fsynced = Host::builder()
        .audit(FileSink::open(&fsync_path)?.fsync(true))
        .plugin(config("hostile", &hostile_path, &hostile))
        .build()
        .await?;
    bench
        .echo("`Host::call`, audit file sink with fsync", &fsynced)
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

    // CPU-heavy: `json.query` over a ~900 KiB document (under the 1 MiB
    // argument cap), a recursive descent that matches nothing, so the time
    // is parsing and walking. Raw unmetered, raw metered (fuel + epochs as
    // the host sets them), and through the host.
    let (json_path, json) = plugin("json")?;
    let query = big_query();
    let heavy = if quick { 10 } else { 100 };
    let unmetered = Floor::with(&json, true, false, None)?;
    let unmetered_p50 = bench
        .latency_n(
            "raw floor, `json.query` over 900 KiB, unmetered",
            heavy,
            || unmetered.call("query", &query),
        )
        .await;
    let metered = Floor::with(&json, true, true, None)?;
    let metered_p50 = bench
        .latency_n(
            "raw floor, `json.query` over 900 KiB, fuel + epochs",
            heavy,
            || metered.call("query", &query),
        )
        .await;
    let json_host = Host::builder()
        .plugin(config("json", &json_path, &json))
        .build()
        .await?;
    let json_host_p50 = bench
        .latency_n("`Host::call`, `json.query` over 900 KiB", heavy, || async {
            json_host
                .call("json.query", &query, &ctx)
                .await
                .expect("call");
        })
        .await;
    bench.notes.push(format!(
        "CPU-heavy (`json.query` over {} KiB, {heavy} calls, p50): metering (fuel + epochs) costs {:.2}x unmetered; `Host::call` (metered, arguments validated against the schema) is {:.2}x the unmetered floor.",
        query.len() / 1024,
        metered_p50.as_secs_f64() / unmetered_p50.as_secs_f64(),
        json_host_p50.as_secs_f64() / unmetered_p50.as_secs_f64()
    ));

    // The disk budget's cost: a 4 KiB write into a read-write grant, from
    // the floor (same preopen, nothing counted) and through the host
    // (every write counted against `limits.disk_write`).
    let rw = scratch.path().join("rw");
    std::fs::create_dir(&rw)?;
    let write_args =
        serde_json::json!({ "path": "/rw/out.txt", "data": "w".repeat(4096) }).to_string();
    let floor_writer = Floor::with(&hostile, true, false, Some(rw.clone()))?;
    let floor_write_p50 = bench
        .latency(
            "raw floor, `hostile.write` 4 KiB, read-write preopen",
            || floor_writer.call("write", &write_args),
        )
        .await;
    let writer = Host::builder()
        .approver(AutoApprove)
        .plugin(config("hostile", &hostile_path, &hostile).dir(&rw, "/rw", DirMode::ReadWrite))
        .build()
        .await?;
    let host_write_p50 = bench
        .latency(
            "`Host::call`, `hostile.write` 4 KiB, read-write grant + disk budget",
            || async {
                writer
                    .call("hostile.write", &write_args, &ctx)
                    .await
                    .expect("call");
            },
        )
        .await;
    bench.notes.push(format!(
        "Disk budget: a 4 KiB write through a read-write grant costs {:.1} µs through `Host::call` against {:.1} µs on the floor with the same preopen ({:+.1} µs, which includes every other per-call check and an approval; the floor opens its directory for every call, the host shares the one it opened at load; the budget itself is a table lookup and one atomic update per write, per open with `create` and per stream opened).",
        host_write_p50.as_secs_f64() * 1e6,
        floor_write_p50.as_secs_f64() * 1e6,
        (host_write_p50.as_secs_f64() - floor_write_p50.as_secs_f64()) * 1e6
    ));

    io::files(&mut bench, scratch.path(), quick).await?;
    io::http(&mut bench, quick).await?;
    languages::run(&mut bench, quick).await?;
    flight::in_own_process(&mut bench, quick)?;
    cold_start(&mut bench)?;
    mcp::rows(&mut bench).await?;

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

    // Cold start: loading a plugin compiled before (compile cache warm),
    // a small component and the largest Rust one.
    let cache = scratch.path().join("cache");
    let mut loads = Vec::new();
    for name in ["hostile", "files"] {
        let (path, bytes) = plugin(name)?;
        let build = || {
            Host::builder()
                .compile_cache(&cache)
                .plugin(config(name, &path, &bytes))
                .build()
        };
        build().await?;
        let start = Instant::now();
        let rounds = 20;
        for _ in 0..rounds {
            build().await?;
        }
        loads.push(format!(
            "`{name}` ({} KiB) {:.2} ms",
            bytes.len() / 1024,
            start.elapsed().as_secs_f64() * 1e3 / f64::from(rounds)
        ));
    }
    bench.notes.push(format!(
        "Building a host with one cached plugin (compile cache warm: sha256 of the bytes, cache entry verified and mapped, pool reserved, tool list read): {}.",
        loads.join(", ")
    ));

    println!(
        "{} calls per row, fresh instance per call, 2-worker tokio runtime\n",
        bench.iterations
    );
    println!("{}", bench.markdown());
    Ok(())
}
