//! What a Python or JavaScript plugin costs next to a Rust one: `Host::call`
//! per call under the pooled allocator (the default) for comparable tools,
//! on-demand for reference, how long the first load compiles, and how
//! much linear memory a call needs (the smallest `limits.memory` it runs
//! under, which sizes a pool slot).
//!
//! - Files: Rust `files.read_file` and Python `textstats.file_stats` (which
//!   also counts the words) on the same small poem, read-only grant.
//! - HTTP: Rust `fetch.fetch` and JavaScript `webjson.get_json` of the
//!   same JSON document, served offline by a fixture behind the real
//!   egress gate (`HostBuilder::http_fixtures`): every check runs, nothing
//!   leaves.
//!
//! Components are the ones `plugins/build.sh` put in `plugins/dist/`.

use super::{Bench, config, plugin};
use portcullis::manifest::HttpTable;
use portcullis::{
    CallContext, DirMode, Error, Fixture, Fixtures, Host, InstanceAllocation, Limit, Limits,
    PluginConfig,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The document both HTTP tools fetch.
const API_URL: &str = "https://api.github.com/repos/portcullis-dev/portcullis";

/// One tool of one plugin, with what it needs to run.
struct Subject {
    /// Label in the table.
    label: &'static str,
    plugin: &'static str,
    tool: &'static str,
    arguments: String,
    /// A folder granted read-only at `/sample`.
    dir: Option<&'static str>,
    /// HTTP to the API, served by fixtures.
    http: bool,
    deny_sockets: bool,
}

impl Subject {
    fn qualified(&self) -> String {
        format!("{}.{}", self.plugin, self.tool)
    }

    /// A host with only this plugin, its compiled code cached in `cache`.
    async fn host(
        &self,
        cache: &Path,
        fixtures: &Arc<Fixtures>,
        allocation: InstanceAllocation,
        memory: Option<u64>,
    ) -> Result<Host, Box<dyn std::error::Error>> {
        let (path, bytes) = plugin(self.plugin)?;
        let mut plugin: PluginConfig = config(self.plugin, &path, &bytes);
        if let Some(dir) = self.dir {
            plugin = plugin.dir(dir, "/sample", DirMode::ReadOnly);
        }
        if self.http {
            plugin = plugin.http(HttpTable::new("https://api.github.com/"));
        }
        if self.deny_sockets {
            plugin = plugin.deny_import("wasi:sockets/*");
        }
        if let Some(memory) = memory {
            plugin = plugin.limits(Limits {
                memory,
                ..Limits::default()
            });
        }
        Ok(Host::builder()
            .compile_cache(cache)
            .instance_allocation(allocation)
            .http_fixtures(Arc::clone(fixtures))
            .plugin(plugin)
            .build()
            .await?)
    }
}

fn subjects() -> Vec<Subject> {
    let poem = serde_json::json!({ "path": "/sample/poem.txt" }).to_string();
    let get = serde_json::json!({ "url": API_URL }).to_string();
    vec![
        Subject {
            label: "Rust `files.read_file`",
            plugin: "files",
            tool: "read_file",
            arguments: poem.clone(),
            dir: Some("plugins/textstats/sample"),
            http: false,
            deny_sockets: false,
        },
        Subject {
            label: "Python `textstats.file_stats`",
            plugin: "textstats",
            tool: "file_stats",
            arguments: poem,
            dir: Some("plugins/textstats/sample"),
            http: false,
            deny_sockets: true,
        },
        Subject {
            label: "Rust `fetch.fetch`, fixture-served JSON",
            plugin: "fetch",
            tool: "fetch",
            arguments: get.clone(),
            dir: None,
            http: true,
            deny_sockets: false,
        },
        Subject {
            label: "JavaScript `webjson.get_json`, fixture-served JSON",
            plugin: "webjson",
            tool: "get_json",
            arguments: get,
            dir: None,
            http: true,
            deny_sockets: false,
        },
    ]
}

/// The smallest `limits.memory` (a multiple of 64 KiB) under which
/// `subject` loads in the pool and one call runs (bisected between 64 KiB
/// and the 64 MiB default), or why it did not at the default. The pool's
/// memory slot is as large as the largest `limits.memory`, so this is also
/// the smallest slot the plugin fits.
async fn memory_needed(
    subject: &Subject,
    cache: &Path,
    fixtures: &Arc<Fixtures>,
) -> Result<u64, String> {
    let page = 64 << 10;
    let runs = |pages: u64| async move {
        // Below the default, a refusal at load is "too small" too: a memory
        // slot smaller than a module's initial memory does not fit it (the
        // default was checked to load first).
        let Ok(host) = subject
            .host(
                cache,
                fixtures,
                InstanceAllocation::Pooled,
                Some(pages * page),
            )
            .await
        else {
            return Ok(false);
        };
        match host
            .call(
                &subject.qualified(),
                &subject.arguments,
                &CallContext::new(),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::LimitExceeded {
                limit: Limit::Memory,
                ..
            }) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    };
    let (mut low, mut high) = (0, Limits::default().memory / page);
    let default = subject
        .host(
            cache,
            fixtures,
            InstanceAllocation::Pooled,
            Some(high * page),
        )
        .await;
    if let Err(e) = default {
        return Err(format!(
            "does not load under the default `limits.memory`: {e}"
        ));
    }
    if !runs(high).await? {
        return Err("does not run under the default `limits.memory`".into());
    }
    // Invariant: `low` pages fail, `high` pages run.
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if runs(mid).await? {
            high = mid;
        } else {
            low = mid;
        }
    }
    Ok(high * page)
}

/// Adds the language rows and notes to `bench`.
pub(crate) async fn run(bench: &mut Bench, quick: bool) -> Result<(), Box<dyn std::error::Error>> {
    let iterations = if quick { 50 } else { 500 };
    let scratch = tempfile::tempdir()?;
    let cache = scratch.path().join("cache");
    let fixtures = Arc::new(Fixtures::default());
    let mut document = Fixture::new("GET", API_URL);
    document.headers = vec![("content-type".into(), "application/json".into())];
    document.body = serde_json::json!({
        "full_name": "portcullis-dev/portcullis",
        "description": "Run AI-agent tools as sandboxed WebAssembly components",
        "stargazers_count": 42,
        "topics": ["wasm", "wasi", "agents"],
    })
    .to_string()
    .into_bytes();
    fixtures.set(vec![document]);
    let ctx = CallContext::new();

    let mut p50 = Vec::new();
    let mut notes = Vec::new();
    for subject in subjects() {
        let (_, bytes) = plugin(subject.plugin)?;
        let start = Instant::now();
        let pooled = subject
            .host(&cache, &fixtures, InstanceAllocation::Pooled, None)
            .await?;
        let compile = start.elapsed();
        let qualified = subject.qualified();
        // Each row's first calls are its warm-up.
        let row = bench
            .latency_n(
                &format!("`Host::call`, {}, pooled", subject.label),
                iterations,
                || async {
                    pooled
                        .call(&qualified, &subject.arguments, &ctx)
                        .await
                        .expect("call");
                },
            )
            .await;
        drop(pooled);
        let on_demand = subject
            .host(&cache, &fixtures, InstanceAllocation::OnDemand, None)
            .await?;
        let on_demand_p50 = bench
            .latency_n(
                &format!("`Host::call`, {}, on-demand", subject.label),
                iterations,
                || async {
                    on_demand
                        .call(&qualified, &subject.arguments, &ctx)
                        .await
                        .expect("call");
                },
            )
            .await;
        drop(on_demand);
        let memory = match memory_needed(&subject, &cache, &fixtures).await {
            Ok(bytes) => format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20)),
            Err(why) => why,
        };
        notes.push(format!(
            "{}: component {:.1} MiB, first load (compile) {:.2} s, p50 {:.0} µs pooled / {:.0} µs on-demand, smallest `limits.memory` a call runs under: {memory}",
            subject.label,
            bytes.len() as f64 / f64::from(1 << 20),
            compile.as_secs_f64(),
            row.as_secs_f64() * 1e6,
            on_demand_p50.as_secs_f64() * 1e6,
        ));
        p50.push(row);
    }
    let ratio = |i: usize, rust: usize| p50[i].as_secs_f64() / p50[rust].as_secs_f64();
    bench.notes.push(format!(
        "Language plugins ({iterations} calls a row, p50, pooled): Python `textstats.file_stats` {:.1}x Rust `files.read_file` on the same file; JavaScript `webjson.get_json` {:.1}x Rust `fetch.fetch` of the same fixture-served document.\n\n- {}",
        ratio(1, 0),
        ratio(3, 2),
        notes.join("\n- ")
    ));
    Ok(())
}
