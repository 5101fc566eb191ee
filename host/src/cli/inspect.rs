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
            ImportStatus::DenyIfOptedIn => "deny_imports",
            _ => "REFUSED",
        };
        outln!("    {mark:<16} {name}");
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
            Ok(ExitCode::SUCCESS)
        }
        // The same errors (and hints) as loading it from a manifest.
        Err(reason) => {
            let plugin = args
                .file
                .file_stem()
                .map_or_else(|| "component".into(), |s| s.to_string_lossy().into_owned());
            let refused: Vec<String> = inspection
                .imports
                .iter()
                .filter(|(_, status)| *status == ImportStatus::Refused)
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
