//! `portcullis call`: run one tool and print its output.
//!
//! stdout carries only the tool's output (JSON), so it can be piped;
//! everything else (diagnostics, what the plugin wrote to its own stdio,
//! its logs) goes to stderr. Ctrl-C cancels the call.

use super::Failure;
use portcullis::{CallContext, CancellationToken, Captured, Host};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
  portcullis call plugins/portcullis.toml files.list_dir '{\"path\": \"/sample\"}'
  echo '{\"path\": \"/sample/hello.txt\"}' | portcullis call plugins/portcullis.toml read_file -")]
pub(crate) struct Args {
    /// The manifest (`portcullis.toml`).
    manifest: PathBuf,
    /// The tool: `plugin.tool`, or `tool` when only one plugin has it.
    tool: String,
    /// Arguments as a JSON object; `-` reads them from stdin.
    #[arg(default_value = "{}")]
    arguments: String,
    /// Who is calling, for the record.
    #[arg(long)]
    caller: Option<String>,
    /// Print the output on one line instead of indented.
    #[arg(long)]
    compact: bool,
}

pub(crate) async fn run(args: &Args) -> Result<ExitCode, Failure> {
    let arguments = if args.arguments == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::Config {
                message: format!("failed to read the arguments from stdin: {e}"),
                hint: None,
            })?;
        text
    } else {
        args.arguments.clone()
    };

    let host = Host::from_manifest(&args.manifest).await?;
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.cancel();
        }
    });
    let mut ctx = CallContext::new().cancellation(cancel);
    if let Some(caller) = &args.caller {
        ctx = ctx.caller(caller.clone());
    }

    let output = host.call(&args.tool, &arguments, &ctx).await?;
    let text = if args.compact {
        serde_json::to_string(&output.value)
    } else {
        serde_json::to_string_pretty(&output.value)
    }
    .map_err(|e| Failure::Internal(format!("failed to print the output: {e}")))?;
    outln!("{text}");

    report_stdio("stdout", &output.stdout);
    report_stdio("stderr", &output.stderr);
    for log in &output.logs {
        tracing::info!(level = ?log.level, message = ?log.message, "plugin log");
    }
    if output.logs_dropped > 0 {
        tracing::info!(dropped = output.logs_dropped, "plugin log messages dropped");
    }
    tracing::debug!(
        fuel = output.fuel_used,
        duration = ?output.duration,
        sha256 = %output.plugin_sha256,
        "call finished"
    );
    Ok(ExitCode::SUCCESS)
}

/// Notes on stderr what the plugin wrote to one of its streams. The bytes
/// are untrusted: they are shown escaped, and only with `--verbose`.
fn report_stdio(stream: &str, captured: &Captured) {
    if captured.total() == 0 {
        return;
    }
    tracing::info!(
        kept = captured.kept.len(),
        discarded = captured.discarded,
        text = %String::from_utf8_lossy(&captured.kept).escape_debug(),
        "the plugin wrote to its {stream}"
    );
}
