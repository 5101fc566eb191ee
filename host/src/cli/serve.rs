//! `portcullis serve`: the manifest's tools over MCP, a thin layer over
//! [`portcullis::McpServer`].
//!
//! On stdio, stdout carries nothing but JSON-RPC: diagnostics go to stderr
//! and what plugins write to their own stdio is captured by the sandbox.
//! The server ends cleanly on EOF, SIGTERM or Ctrl-C: calls in flight are
//! cancelled, recorded, and the audit log flushed.

use super::Failure;
use portcullis::{CancellationToken, FileSink, HostBuilder, McpServer, StateKey};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
  portcullis serve plugins/portcullis.toml
  claude mcp add portcullis -- portcullis serve /path/to/portcullis.toml")]
pub(crate) struct Args {
    /// The manifest (`portcullis.toml`).
    pub(crate) manifest: PathBuf,
    /// Append audit records to FILE (instead of the manifest's
    /// `[audit] path`).
    #[arg(long, value_name = "FILE")]
    audit: Option<PathBuf>,
    /// Seal the `requestState` of 2026-07-28 approvals with the key in
    /// FILE (at least 32 bytes; e.g. `head -c 32 /dev/urandom > FILE`)
    /// instead of a random key of this process, so that servers sharing
    /// FILE accept each other's.
    #[arg(long, value_name = "FILE")]
    state_key: Option<PathBuf>,
}

pub(crate) async fn run(args: &Args, host: HostBuilder) -> Result<ExitCode, Failure> {
    let mut builder = host;
    if let Some(path) = &args.audit {
        let sink = FileSink::open(path).map_err(|e| Failure::Config {
            message: format!("failed to open the audit log `{}`: {e}", path.display()),
            hint: None,
        })?;
        builder = builder.audit(sink);
    }
    let key = args.state_key.as_deref().map(read_state_key).transpose()?;
    let host = builder.build().await?;
    let server = match key {
        Some(key) => McpServer::with_state_key(host, key)?,
        None => McpServer::new(host)?,
    };
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    server
        .serve_stdio(tokio::io::stdin(), tokio::io::stdout(), stop)
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// The `--state-key` file's bytes, as they are (no newline trimmed).
fn read_state_key(path: &Path) -> Result<StateKey, Failure> {
    let bytes = std::fs::read(path).map_err(|e| Failure::Config {
        message: format!("failed to read the state key `{}`: {e}", path.display()),
        hint: None,
    })?;
    StateKey::try_from(bytes).map_err(|e| Failure::Config {
        message: format!("`{}`: {e}", path.display()),
        hint: Some("write 32 random bytes to it: `head -c 32 /dev/urandom > FILE`".into()),
    })
}

/// Cancels `stop` on SIGTERM or Ctrl-C.
async fn stop_on_signal(stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::debug!("stopping: signal received");
    stop.cancel();
}
