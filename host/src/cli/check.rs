//! `portcullis check`: load every plugin of a manifest (pins, imports, tool
//! lists) and show, in plain words, what each one is granted.

use super::Failure;
use portcullis::HostBuilder;
use portcullis::manifest::ByteSize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The manifest (`portcullis.toml`).
    pub(crate) manifest: PathBuf,
}

pub(crate) async fn run(host: HostBuilder) -> Result<ExitCode, Failure> {
    let host = host.build().await?;
    let tools = host.tools();
    for policy in host.policies() {
        outln!("plugin `{}`", policy.name);
        outln!("  source    {}", policy.source.display());
        outln!("  sha256    {}", policy.sha256);
        if policy.dirs.is_empty() {
            outln!("  files     none");
        }
        for dir in &policy.dirs {
            let mode = dir.mode.describe();
            outln!(
                "  files     {mode} {} (as {})",
                dir.host.display(),
                dir.guest
            );
            if let Some(why) = &dir.unsafe_allow {
                eprintln!(
                    "warning: plugin `{}` is granted the dangerous folder `{}` ({}): `unsafe_allow = {why:?}`\nhint: grant a narrower folder if you can",
                    policy.name,
                    dir.host.display(),
                    dir.mode.as_str()
                );
            }
        }
        if policy.env.is_empty() {
            outln!("  env       none");
        } else {
            let names: Vec<&str> = policy.env.iter().map(|(k, _)| k.as_str()).collect();
            outln!("  env       {}", names.join(", "));
        }
        if policy.secrets.is_empty() {
            outln!("  secrets   none");
        } else {
            outln!("  secrets   {}", policy.secrets.join(", "));
        }
        if policy.http.is_empty() {
            outln!("  network   none");
        }
        if !policy.deny_imports.is_empty() {
            outln!(
                "  denied    {} (linked deny-everything: every operation fails with access-denied)",
                policy.deny_imports.join(", ")
            );
        }
        for rule in &policy.http {
            outln!("  network   {rule}");
        }
        let l = policy.limits;
        outln!(
            "  limits    fuel {}, memory {}, timeout {:?}, output {}, stdio {} per stream",
            l.fuel,
            ByteSize(l.memory),
            l.timeout,
            ByteSize(l.output),
            ByteSize(l.stdio)
        );
        if !policy.http.is_empty() {
            outln!(
                "  http      {} requests per call, {} per response, timeout {:?} (connect {:?})",
                l.http_requests,
                ByteSize(l.http_response),
                l.http_timeout,
                l.http_connect_timeout
            );
        }
        // The "lethal trifecta": private data, untrusted content and a way
        // out. A plugin that reads local data and has egress holds two of
        // the three by itself; the model supplies the third.
        if !policy.dirs.is_empty() && !policy.http.is_empty() {
            let dirs: Vec<&str> = policy.dirs.iter().map(|d| d.guest.as_str()).collect();
            let http: Vec<String> = policy.http.iter().map(ToString::to_string).collect();
            eprintln!(
                "warning: plugin `{}` can read local data (`dirs`: {}) and send data out (`http`: {}); one prompt injection can exfiltrate the files\nhint: give reading and fetching to separate plugins, or narrow both grants",
                policy.name,
                dirs.join(", "),
                http.join(", ")
            );
        }
        outln!("  tools");
        for tool in tools.iter().filter(|t| t.plugin == policy.name) {
            let summary = tool.description.lines().next().unwrap_or("");
            outln!(
                "    {:<28} {:<11} {}",
                tool.name,
                tool.effect.as_str(),
                summary.escape_debug()
            );
            println!("      approval {}", tool.approval.describe());
        }
    }
    outln!(
        "ok: {} plugin(s), {} tool(s)",
        host.policies().count(),
        tools.len()
    );
    Ok(ExitCode::SUCCESS)
}
