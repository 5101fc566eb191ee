//! `portcullis tools`: the tool definitions of a manifest, ready to hand to
//! a model API or an MCP client.

use super::Failure;
use portcullis::{HostBuilder, ToolFormat, descriptor_json, export_tools};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    /// The host's own descriptors: schemas, effect, pins and grants.
    Json,
    /// Anthropic Messages API `tools`.
    Anthropic,
    /// OpenAI Chat Completions `tools`.
    Openai,
    /// OpenAI Responses API `tools`.
    OpenaiResponses,
    /// Model Context Protocol `Tool` objects.
    Mcp,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Model formats name tools `plugin__tool` (shortened with a hash past 64
characters); `--format json` shows the map under `model_name`.

Examples:
  portcullis tools plugins/portcullis.toml
  portcullis tools plugins/portcullis.toml --format anthropic > tools.json")]
pub(crate) struct Args {
    /// The manifest (`portcullis.toml`).
    pub(crate) manifest: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
}

pub(crate) async fn run(args: &Args, host: HostBuilder) -> Result<ExitCode, Failure> {
    let host = host.build().await?;
    let tools = host.tools();
    let format = match args.format {
        Format::Json => None,
        Format::Anthropic => Some(ToolFormat::Anthropic),
        Format::Openai => Some(ToolFormat::OpenAiChat),
        Format::OpenaiResponses => Some(ToolFormat::OpenAiResponses),
        Format::Mcp => Some(ToolFormat::Mcp),
    };
    let value = match format {
        Some(format) => serde_json::Value::Array(export_tools(&tools, format)?.definitions),
        None => {
            let names = portcullis::ToolNames::new(&tools)?;
            serde_json::Value::Array(
                tools
                    .iter()
                    .map(|t| {
                        let mut d = descriptor_json(t);
                        d["model_name"] = names.model_name(&t.name).into();
                        d
                    })
                    .collect(),
            )
        }
    };
    let text = serde_json::to_string_pretty(&value)
        .map_err(|e| Failure::Internal(format!("failed to print the tools: {e}")))?;
    outln!("{text}");
    Ok(ExitCode::SUCCESS)
}
