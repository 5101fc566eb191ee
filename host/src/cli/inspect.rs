//! `portcullis inspect`: what a component imports, exports and declares,
//! before anyone pins or grants it anything.

use super::Failure;
use portcullis::ImportStatus;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
The tool list comes from running the component's `list-tools` in the
sandbox, with no grants and the default limits.

Example:
  portcullis inspect plugins/dist/files.wasm")]
pub(crate) struct Args {
    /// The component (`.wasm`).
    file: PathBuf,
    /// Print the input schemas too.
    #[arg(long)]
    schemas: bool,
}

pub(crate) async fn run(args: &Args) -> Result<ExitCode, Failure> {
    let inspection = portcullis::inspect(&args.file).await?;
    outln!("component {}", args.file.display());
    outln!("  sha256    {}", inspection.sha256);
    outln!("  size      {} bytes", inspection.size);
    outln!("  imports");
    for (name, status) in &inspection.imports {
        let mark = match status {
            ImportStatus::Granted => "ok",
            ImportStatus::NeedsHttpGrant => "needs http grant",
            _ => "REFUSED",
        };
        outln!("    {mark:<16} {name}");
    }
    // Refused unless the manifest entry opts in with `deny_imports`.
    let deniable: Vec<String> = inspection
        .imports
        .iter()
        .filter(|(_, status)| *status == ImportStatus::DenyIfOptedIn)
        .map(|(name, _)| name.clone())
        .collect();
    if !deniable.is_empty() {
        outln!(
            "    (the REFUSED wasi:sockets imports load with `deny_imports = [\"wasi:sockets/*\"]` in the manifest entry: every socket operation then fails with access-denied)"
        );
    }
    outln!("  exports");
    for name in &inspection.exports {
        outln!("    {name}");
    }
    match &inspection.tools {
        Ok(tools) => {
            if let Some(hash) = &inspection.tool_list_sha256 {
                outln!("  tool list sha256 {hash}");
            }
            outln!("  tools");
            for tool in tools {
                outln!(
                    "    {:<24} {:<11} {}",
                    tool.name,
                    tool.effect.as_str(),
                    tool.description.lines().next().unwrap_or("").escape_debug()
                );
                if args.schemas {
                    let schema = serde_json::to_string(&tool.input_schema)
                        .map_err(|e| Failure::Internal(e.to_string()))?;
                    outln!("      input {schema}");
                }
            }
            if deniable.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                Err(Failure::Host(portcullis::Error::ForbiddenImports {
                    plugin: plugin_name(args),
                    imports: deniable,
                }))
            }
        }
        // The same errors (and hints) as loading it from a manifest.
        Err(reason) => {
            let plugin = plugin_name(args);
            let refused: Vec<String> = inspection
                .imports
                .iter()
                .filter(|(_, status)| {
                    *status != ImportStatus::Granted && *status != ImportStatus::NeedsHttpGrant
                })
                .map(|(name, _)| name.clone())
                .collect();
            Err(Failure::Host(if refused.is_empty() {
                portcullis::Error::InvalidPlugin {
                    plugin,
                    reason: reason.clone(),
                }
            } else {
                portcullis::Error::ForbiddenImports {
                    plugin,
                    imports: refused,
                }
            }))
        }
    }
}

/// The name errors give the inspected component: its file stem.
fn plugin_name(args: &Args) -> String {
    args.file
        .file_stem()
        .map_or_else(|| "component".into(), |s| s.to_string_lossy().into_owned())
}
