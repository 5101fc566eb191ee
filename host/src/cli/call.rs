//! `portcullis call`: run one tool and print its output.
//!
//! stdout carries only the tool's output (JSON), so it can be piped;
//! everything else (diagnostics, what the plugin wrote to its own stdio,
//! its logs) goes to stderr. Ctrl-C cancels the call.
//!
//! A call that needs approval is shown on the terminal (tool, effect,
//! grants, why, the full arguments; the plugin's text escaped) and runs only
//! if the user answers `y`. Without a terminal it is denied unless
//! `--approve` was given.

use super::Failure;
use portcullis::{
    ApprovalRequest, Approver, CallContext, CancellationToken, Captured, Decision, FileSink,
    HostBuilder, escape_controls, json_for_terminal,
};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
  portcullis call plugins/portcullis.toml files.list_dir '{\"path\": \"/sample\"}'
  echo '{\"path\": \"/sample/hello.txt\"}' | portcullis call plugins/portcullis.toml read_file -")]
pub(crate) struct Args {
    /// The manifest (`portcullis.toml`).
    pub(crate) manifest: PathBuf,
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
    /// Approve this call if it needs approval, without asking. Without it,
    /// a call that needs approval is asked about on the terminal, or denied
    /// (exit code 4) when there is no terminal.
    #[arg(long)]
    approve: bool,
    /// Append audit records to FILE (instead of the manifest's
    /// `[audit] path`).
    #[arg(long, value_name = "FILE")]
    audit: Option<PathBuf>,
    /// If the plugin traps (a panic, a limit), write a WebAssembly core
    /// dump of its instance into DIR, for a wasm debugger. The error names
    /// the file. A dump holds what the plugin had in memory.
    #[arg(long, value_name = "DIR")]
    core_dump: Option<PathBuf>,
}

/// Approves with `--approve`, asks on a terminal, denies otherwise.
struct CliApprover {
    approve: bool,
}

impl Approver for CliApprover {
    fn decide(&self, request: &ApprovalRequest) -> Decision {
        if self.approve {
            return request.approve_by("--approve");
        }
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            return request.deny(
                "approval needed, but there is no terminal to ask on and `--approve` was not given",
            );
        }
        if ask(request) {
            request.approve_by("terminal")
        } else {
            request.deny("refused at the terminal")
        }
    }
}

/// Shows the request on stderr and reads `y` or anything else from stdin.
/// Everything that comes from the plugin or the caller is shown as it is
/// (quotes included, so JSON stays readable) except control and invisible
/// characters, which are escaped: it cannot move the cursor, clear the
/// screen, reorder the text or fake a line.
fn ask(request: &ApprovalRequest) -> bool {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "approval needed: {}",
        escape_controls(&request.reason, false)
    );
    let _ = writeln!(err, "  tool        {}", request.tool);
    let _ = writeln!(
        err,
        "  plugin      {} (sha256 {})",
        request.plugin, request.plugin_sha256
    );
    let _ = writeln!(err, "  effect      {}", request.effect.as_str());
    let _ = writeln!(
        err,
        "  description {}",
        escape_controls(&request.description, false)
    );
    for dir in &request.dirs {
        let mode = dir.mode.describe();
        let _ = writeln!(
            err,
            "  files       {mode} {} (as {})",
            dir.host.display(),
            dir.guest
        );
    }
    if !request.env.is_empty() {
        let _ = writeln!(err, "  env         {}", request.env.join(", "));
    }
    for destination in &request.http {
        let _ = writeln!(err, "  network     {destination}");
    }
    if !request.secrets.is_empty() {
        let _ = writeln!(err, "  secrets     {}", request.secrets.join(", "));
    }
    let _ = writeln!(
        err,
        "  arguments   {}",
        escape_controls(&request.arguments, false)
    );
    let _ = write!(err, "approve this call? [y/N] ");
    let _ = err.flush();
    drop(err);
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}

pub(crate) async fn run(args: &Args, host: HostBuilder) -> Result<ExitCode, Failure> {
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

    let mut builder = host.approver(CliApprover {
        approve: args.approve,
    });
    if let Some(path) = &args.audit {
        let sink = FileSink::open(path).map_err(|e| Failure::Config {
            message: format!("failed to open the audit log `{}`: {e}", path.display()),
            hint: None,
        })?;
        builder = builder.audit(sink);
    }
    if let Some(dir) = &args.core_dump {
        builder = builder.core_dumps(dir);
    }
    let host = builder.build().await?;
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
    // The same JSON value, with DEL, C1 and bidirectional controls (which
    // serde_json leaves raw) escaped: safe on a terminal, exact in a pipe.
    outln!("{}", json_for_terminal(&text));

    report_stdio("stdout", &output.stdout);
    report_stdio("stderr", &output.stderr);
    for log in &output.logs {
        tracing::info!(level = ?log.level, message = ?log.message, "plugin log");
    }
    if output.logs_dropped > 0 {
        tracing::info!(dropped = output.logs_dropped, "plugin log messages dropped");
    }
    for flag in &output.flags {
        tracing::warn!(%flag, "the output matches a known prompt-injection pattern");
    }
    tracing::debug!(
        call_id = output.call_id,
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
