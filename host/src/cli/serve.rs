//! `portcullis serve`: the manifest's tools over MCP, a thin layer over
//! [`portcullis::McpServer`].
//!
//! On stdio, stdout carries nothing but JSON-RPC: diagnostics go to stderr
//! and what plugins write to their own stdio is captured by the sandbox.
//! The server ends cleanly on EOF, SIGTERM or Ctrl-C: calls in flight are
//! cancelled, recorded, and the audit log flushed.
//!
//! With `--http ADDR` it serves Streamable HTTP instead, at
//! `http://ADDR/mcp`, admitting only requests with a bearer token from
//! `PORTCULLIS_MCP_TOKEN` or `--token-file` (or, on loopback only, none
//! with `--no-token`).

use super::Failure;
use portcullis::{
    BearerToken, CancellationToken, FileSink, HostBuilder, HttpOptions, McpServer, StateKey,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The environment variable holding a bearer token (`SECRET` or
/// `NAME:SECRET`) for `--http`.
const TOKEN_VAR: &str = "PORTCULLIS_MCP_TOKEN";

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
  portcullis serve plugins/portcullis.toml
  claude mcp add portcullis -- portcullis serve /path/to/portcullis.toml
  PORTCULLIS_MCP_TOKEN=$(cat token) portcullis serve portcullis.toml --http 127.0.0.1:8765")]
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
    /// Serve Streamable HTTP on ADDR (e.g. `127.0.0.1:8765`; port 0 picks
    /// one) at `/mcp`, instead of stdio. Needs a bearer token from
    /// `PORTCULLIS_MCP_TOKEN` or `--token-file`.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Bearer tokens for `--http`, one per line: `NAME:SECRET` or `SECRET`
    /// (named `token`); NAME is the caller in the audit log.
    #[arg(long, value_name = "FILE", requires = "http")]
    token_file: Option<PathBuf>,
    /// Serve `--http` without a token (loopback addresses only).
    #[arg(long, requires = "http", conflicts_with = "token_file")]
    no_token: bool,
    /// Also accept this `Host` header (the name clients use for a
    /// non-loopback `--http` address). Repeatable.
    #[arg(long, value_name = "NAME", requires = "http")]
    allow_host: Vec<String>,
    /// Accept requests from browser pages of ORIGIN (`scheme://host:port`);
    /// any other `Origin` is refused. Repeatable.
    #[arg(long, value_name = "ORIGIN", requires = "http")]
    allow_origin: Vec<String>,
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
    let http = match args.http {
        Some(addr) => {
            let options = http_options(args)?;
            // Refused before anything is loaded or bound.
            options.check(addr).map_err(|e| Failure::Config {
                message: e.to_string(),
                hint: e.hint(),
            })?;
            if addr.ip().is_unspecified() && args.allow_host.is_empty() {
                eprintln!(
                    "warning: clients reach `{addr}` under some name or address, which no `Host` check admits yet\n\
                     hint: name it with `--allow-host NAME` (e.g. the machine's address or DNS name)"
                );
            }
            Some((addr, options))
        }
        None => None,
    };
    let host = builder.build().await?;
    let server = match key {
        Some(key) => McpServer::with_state_key(host, key)?,
        None => McpServer::new(host)?,
    };
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    if let Some((addr, options)) = http {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::Config {
                message: format!("failed to listen on `{addr}`: {e}"),
                hint: None,
            })?;
        let bound = listener.local_addr().unwrap_or(addr);
        eprintln!(
            "portcullis: serving MCP over HTTP at http://{bound}{}",
            portcullis::MCP_PATH
        );
        server.serve_http(listener, options, stop).await?;
        return Ok(ExitCode::SUCCESS);
    }
    server.serve_process_stdio(stop).await?;
    Ok(ExitCode::SUCCESS)
}

/// Who `--http` admits: the tokens of `PORTCULLIS_MCP_TOKEN` and
/// `--token-file`, the extra hosts and origins.
fn http_options(args: &Args) -> Result<HttpOptions, Failure> {
    let mut options = HttpOptions::new();
    let bad = |source: String, e: String| {
        Failure::Config {
        message: format!("{source}: {e}"),
        hint: Some(
            "a token is one line `NAME:SECRET` or `SECRET` of at least 16 printable ASCII characters, e.g. `head -c 24 /dev/urandom | base64`"
                .into(),
        ),
    }
    };
    if let Some(value) = std::env::var_os(TOKEN_VAR) {
        // Two opposite wishes: refused rather than one silently winning.
        if args.no_token {
            return Err(Failure::Config {
                message: format!("`--no-token` conflicts with `{TOKEN_VAR}`, which is set"),
                hint: Some(format!(
                    "unset `{TOKEN_VAR}` to serve without a token, or drop `--no-token` to require it"
                )),
            });
        }
        let value = value
            .into_string()
            .map_err(|_| bad(TOKEN_VAR.into(), "not UTF-8".into()))?;
        for token in
            BearerToken::parse_file(&value, "token").map_err(|e| bad(TOKEN_VAR.into(), e))?
        {
            options = options.token(token);
        }
    }
    if let Some(path) = &args.token_file {
        refuse_shared_file(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| Failure::Config {
            message: format!("failed to read the token file `{}`: {e}", path.display()),
            hint: None,
        })?;
        let tokens = BearerToken::parse_file(&text, "token")
            .map_err(|e| bad(format!("`{}`", path.display()), e))?;
        if tokens.is_empty() {
            return Err(bad(
                format!("`{}`", path.display()),
                "holds no token".into(),
            ));
        }
        for token in tokens {
            options = options.token(token);
        }
    }
    if args.no_token {
        options = options.without_token();
    }
    for host in &args.allow_host {
        options = options.allow_host(host.clone());
    }
    for origin in &args.allow_origin {
        options = options.allow_origin(origin.clone());
    }
    Ok(options)
}

/// A token file others can read or write holds no secret: refused, as
/// ssh refuses such a key.
fn refuse_shared_file(path: &Path) -> Result<(), Failure> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| Failure::Config {
                message: format!("failed to read the token file `{}`: {e}", path.display()),
                hint: None,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Failure::Config {
                message: format!(
                    "the token file `{}` is open to other users (mode {:o})",
                    path.display(),
                    mode & 0o777
                ),
                hint: Some(format!("`chmod 600 {}`", path.display())),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
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
