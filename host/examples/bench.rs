//! How much a Portcullis call costs over the raw wasmtime floor, measured
//! side by side in one run (ratios, not absolute times, are what to
//! compare on a shared machine).
//!
//! ```sh
//! plugins/build.sh && cargo run --release --example bench      # absolute numbers
//! plugins/build.sh && cargo run --example bench                # dev build: ratio only
//! ```
//!
//! - `raw`: what any wasmtime host pays at least: a fresh store and WASI
//!   context, instantiate a pre-instantiated component, call one export,
//!   drop. Default engine settings, everything linked, no limits.
//! - `portcullis`: `Host::call` on the same component and tool: argument
//!   parsing and schema validation, a fresh bounded store (fuel, epoch
//!   deadline, memory limiter, capped stdio), the call, output checks.

use portcullis::{CallContext, Host, PluginConfig, sha256_hex};
use std::path::Path;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod raw {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
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

const ITERATIONS: usize = 2_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = Path::new("plugins/dist/hostile.wasm");
    let bytes = std::fs::read(path)
        .map_err(|e| format!("{}: {e} (run `plugins/build.sh` first)", path.display()))?;

    // The raw floor.
    let engine = Engine::new(&Config::new())?;
    let component = Component::from_binary(&engine, &bytes)?;
    let mut linker = Linker::<Raw>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    raw::portcullis::tool::log::add_to_linker::<Raw, wasmtime::component::HasSelf<Raw>>(
        &mut linker,
        |r| r,
    )?;
    let pre = raw::PluginPre::new(linker.instantiate_pre(&component)?)?;
    let raw_times = measure(|| async {
        let mut store = Store::new(
            &engine,
            Raw {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        let plugin = pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        let out = plugin
            .portcullis_tool_tool()
            .call_call(&mut store, "echo", "{}")
            .await
            .expect("call");
        assert!(out.is_ok());
    })
    .await;

    // The same tool through Portcullis.
    let host = Host::builder()
        .plugin(PluginConfig::new("hostile", path).sha256(sha256_hex(&bytes)))
        .build()
        .await?;
    let ctx = CallContext::new();
    let host_times = measure(|| async {
        host.call("hostile.echo", "{}", &ctx).await.expect("call");
    })
    .await;

    let (raw_median, raw_p90) = stats(raw_times);
    let (host_median, host_p90) = stats(host_times);
    println!("{ITERATIONS} calls each, fresh instance per call");
    println!("| what       | median µs | p90 µs | median ratio |");
    println!("|------------|-----------|--------|--------------|");
    println!(
        "| raw        | {:>9.1} | {:>6.1} | {:>12} |",
        micros(raw_median),
        micros(raw_p90),
        "1.00"
    );
    println!(
        "| portcullis | {:>9.1} | {:>6.1} | {:>12.2} |",
        micros(host_median),
        micros(host_p90),
        host_median.as_secs_f64() / raw_median.as_secs_f64()
    );
    Ok(())
}

async fn measure<F, Fut>(mut call: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Warm up caches and lazy initialisation first.
    for _ in 0..ITERATIONS / 10 {
        call().await;
    }
    let mut times = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let start = Instant::now();
        call().await;
        times.push(start.elapsed());
    }
    times
}

fn stats(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() * 9 / 10])
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
