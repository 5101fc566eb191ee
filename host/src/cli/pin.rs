//! `portcullis pin`: rewrite a manifest's `sha256` pins from the component
//! files, and its `tools_sha256` pins from the tool lists they declare,
//! keeping its comments and layout. A changed tool list is shown as a diff
//! and written only with `--accept-tool-changes` (or a yes on a terminal).

use super::Failure;
use portcullis::manifest::{Pin, Repin, read_tool_lock, write_tool_lock};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The manifest (`portcullis.toml`).
    manifest: PathBuf,
    /// Pin only these plugins (default: all).
    #[arg(long = "plugin", value_name = "NAME")]
    plugins: Vec<String>,
    /// Change nothing; exit with code 3 if a pin is missing or stale.
    #[arg(long)]
    check: bool,
    /// Write tool-list pins even when a tool's name, description, schema
    /// or effect changed (after reading the diff).
    #[arg(long)]
    accept_tool_changes: bool,
}

/// One plugin's tool list now, and what changed against its pin.
struct Tools {
    list: serde_json::Value,
    sha256: String,
    /// The diff against the pinned list, when the pin differs.
    diff: Option<String>,
}

pub(crate) fn run(args: &Args) -> Result<ExitCode, Failure> {
    let path = &args.manifest;
    let mut repin = Repin::read(path, &args.plugins).map_err(|e| Failure::Config {
        message: e.message,
        hint: e.hint,
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let lock = read_tool_lock(path);
    let runtime = super::runtime()?;
    let mut tools = Vec::new();
    for pin in repin.pins() {
        let inspection = runtime
            .block_on(portcullis::inspect(base.join(&pin.source)))
            .map_err(Failure::Host)?;
        let (Some(list), Some(sha256)) = (inspection.tool_list, inspection.tool_list_sha256) else {
            let why = inspection.tools.err().unwrap_or_default();
            return Err(Failure::Config {
                message: format!("plugin `{}`: cannot read its tool list: {why}", pin.plugin),
                hint: None,
            });
        };
        let diff = match &pin.old_tools {
            Some(old) if *old != sha256 => {
                let before = lock
                    .get(&pin.plugin)
                    .filter(|l| portcullis::tool_list_hash(l) == *old);
                Some(portcullis::tool_diff(before, &list))
            }
            _ => None,
        };
        tools.push(Tools { list, sha256, diff });
    }

    let pins = repin.pins();
    let mut stale: Vec<&str> = Vec::new();
    for (pin, tools) in pins.iter().zip(&tools) {
        let state = match (&pin.old, args.check) {
            (Some(old), _) if *old == pin.new => "unchanged",
            (None, true) => "MISSING",
            (Some(_), true) => "STALE",
            (None, false) => "pinned",
            (Some(_), false) => "updated",
        };
        let tool_state = match (&pin.old_tools, args.check) {
            (Some(old), _) if *old == tools.sha256 => "tools unchanged",
            (None, true) => "tools MISSING",
            (Some(_), true) => "tools CHANGED",
            (None, false) => "tools pinned",
            (Some(_), false) => "tools CHANGED",
        };
        if !pin.is_current() || pin.old_tools.as_deref() != Some(tools.sha256.as_str()) {
            stale.push(&pin.plugin);
        }
        outln!(
            "{:<10} {}  {}  {}  ({tool_state})",
            state,
            pin.new,
            pin.plugin,
            pin.source
        );
        if let Some(diff) = &tools.diff {
            outln!("tool list of plugin `{}` changed:\n{diff}", pin.plugin);
        }
    }

    if args.check {
        if stale.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(Failure::Config {
            message: format!("stale or missing pins: {}", stale.join(", ")),
            hint: Some(format!(
                "if the new bytes and tools are the ones you mean to run, run `portcullis pin {}`",
                path.display()
            )),
        });
    }
    let changed: Vec<&str> = pins
        .iter()
        .zip(&tools)
        .filter(|(_, t)| t.diff.is_some())
        .map(|(p, _)| p.plugin.as_str())
        .collect();
    if !changed.is_empty() && !args.accept_tool_changes && !confirm(&changed) {
        return Err(Failure::Config {
            message: format!(
                "the tool list of {} changed; nothing was written",
                changed.join(", ")
            ),
            hint: Some(format!(
                "read the diff above (a tool's description is what the model follows); to accept it, run `portcullis pin --accept-tool-changes {}`",
                path.display()
            )),
        });
    }
    let names: Vec<String> = pins.iter().map(|p: &Pin| p.plugin.clone()).collect();
    let mut lock = lock;
    for (name, tools) in names.iter().zip(tools) {
        repin.set_tools_sha256(name, &tools.sha256);
        lock.insert(name.clone(), tools.list);
    }
    repin
        .write()
        .map_err(|e| Failure::Internal(format!("failed to write `{}`: {e}", path.display())))?;
    write_tool_lock(path, &lock).map_err(|e| {
        Failure::Internal(format!(
            "failed to write the tool lists beside `{}`: {e}",
            path.display()
        ))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Asks on a terminal whether to accept the changed tool lists; `false`
/// without a terminal.
fn confirm(changed: &[&str]) -> bool {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return false;
    }
    eprint!(
        "accept the changed tool list of {}? [y/N] ",
        changed.join(", ")
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}
