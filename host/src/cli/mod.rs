//! The `portcullis` command line: argument parsing, exit codes and the
//! rendering of errors. Each subcommand lives in its own module.
//!
//! Exit codes (also in `--help` and the README):
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | the tool ran and reported an error |
//! | 2 | usage error (bad command line) |
//! | 3 | configuration error: manifest, pin, component or imports |
//! | 4 | the host refused or stopped the call: unknown tool, invalid arguments, approval denied, suspicious, limit, crash, cancellation, invalid output |
//! | 5 | internal host error, or the audit log could not be written |
//!
//! `audit verify` exits with 1 when the log is not intact.

/// Prints one line of data on stdout. When the reader has gone away
/// (`portcullis tools ... | head`), the command ends quietly instead of
/// panicking on the broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

mod audit;
mod call;
mod check;
mod inspect;
mod new;
mod pin;
mod serve;
mod test;
mod tools;

use clap::{Parser, Subcommand};
use portcullis::Error;
use std::path::PathBuf;
use std::process::ExitCode;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the tool ran and reported an error
  2  usage error
  3  configuration error: manifest, pin, component or imports
  4  the host refused or stopped the call: unknown tool, invalid arguments,
     approval denied, suspicious, limit exceeded, crash, cancellation,
     invalid output
  5  internal host error, or the audit log could not be written
`audit verify` exits with 1 when the log is not intact.";

/// Run AI-agent tools as sandboxed, pinned WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, after_help = EXIT_CODES)]
struct Cli {
    /// Show diagnostics on stderr: `-v` debug, `-vv` trace (or set
    /// `RUST_LOG`).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Compile every plugin afresh instead of using the compile cache
    /// (`$PORTCULLIS_CACHE_DIR`, else `$XDG_CACHE_HOME/portcullis`, else
    /// `~/.cache/portcullis`).
    #[arg(long, global = true)]
    no_cache: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the sha256 of component files, as `portcullis.toml` pins them.
    Hash {
        /// Component files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Rewrite the `sha256` pins of a manifest from the current component
    /// files (after a rebuild you trust).
    #[command(after_help = "The file is rewritten atomically; comments and layout are kept.")]
    Pin(pin::Args),
    /// Load every plugin of a manifest and show its tools, grants and limits.
    Check(check::Args),
    /// Show what a component imports, exports and declares (no manifest
    /// needed).
    Inspect(inspect::Args),
    /// Print the tool definitions of a manifest for a model API or MCP
    /// client.
    Tools(tools::Args),
    /// Call one tool and print its output (JSON) on stdout.
    #[command(after_help = EXIT_CODES)]
    Call(call::Args),
    /// Run each plugin's tests file (`tests/PLUGIN.toml` beside the
    /// manifest); exits with 1 if a case fails.
    Test(test::Args),
    /// Create a plugin folder (Rust, Python or JavaScript) that builds,
    /// pins, tests and runs on its own.
    New(new::Args),
    /// Serve the manifest's tools to MCP clients (stdio, or HTTP with `--http`).
    Serve(serve::Args),
    /// Work with audit logs.
    #[command(subcommand)]
    Audit(audit::Command),
}

/// Parses the command line, runs it and maps the outcome to an exit code.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let cache = if cli.no_cache { None } else { cache_dir() };
    init_tracing(cli.verbose);
    let outcome = match cli.command {
        Command::Hash { files } => hash(&files),
        Command::Pin(args) => pin::run(&args),
        Command::Check(args) => {
            runtime().and_then(|rt| rt.block_on(check::run(host(&args.manifest, &cache))))
        }
        Command::Call(args) => {
            runtime().and_then(|rt| rt.block_on(call::run(&args, host(&args.manifest, &cache))))
        }
        Command::New(args) => new::run(&args),
        Command::Test(args) => {
            runtime().and_then(|rt| rt.block_on(test::run(&args, |m| host(m, &cache))))
        }
        Command::Inspect(args) => runtime().and_then(|rt| rt.block_on(inspect::run(&args))),
        Command::Tools(args) => {
            runtime().and_then(|rt| rt.block_on(tools::run(&args, host(&args.manifest, &cache))))
        }
        Command::Serve(args) => runtime().and_then(|rt| {
            let outcome = rt.block_on(serve::run(&args, host(&args.manifest, &cache)));
            // Stdin's reader thread may still be blocked in a read after a
            // signal: do not wait for it (the host is dropped and its audit
            // log flushed by now).
            rt.shutdown_background();
            outcome
        }),
        Command::Audit(command) => audit::run(&command),
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

/// Why a command failed: a library error, or a message of the CLI's own.
#[derive(Debug)]
pub(crate) enum Failure {
    Host(Error),
    /// A configuration problem found by the CLI itself (exit code 3).
    Config {
        message: String,
        hint: Option<String>,
    },
    /// An internal problem (exit code 5).
    Internal(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Host(e)
    }
}

impl Failure {
    fn report(self) -> ExitCode {
        let (message, hint, code) = match self {
            Failure::Host(e) => {
                let code = exit_code(&e);
                (e.to_string(), e.hint(), code)
            }
            Failure::Config { message, hint } => (message, hint, 3),
            Failure::Internal(message) => (message, None, 5),
        };
        // Messages can carry a plugin's text (a tool error, a crash
        // reason): control characters never reach the terminal raw.
        eprintln!("error: {}", portcullis::escape_controls(&message, true));
        if let Some(hint) = hint {
            eprintln!("hint: {}", portcullis::escape_controls(&hint, true));
        }
        ExitCode::from(code)
    }
}

/// The exit code for a library error.
fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Tool { .. } => 1,
        Error::ManifestRead { .. }
        | Error::Manifest { .. }
        | Error::PluginRead { .. }
        | Error::PinMismatch { .. }
        | Error::ToolListChanged { .. }
        | Error::InvalidComponent { .. }
        | Error::ForbiddenImports { .. }
        | Error::InvalidPlugin { .. }
        | Error::NameCollision { .. } => 3,
        Error::Internal(_) | Error::Audit(_) => 5,
        _ => 4,
    }
}

pub(crate) fn write_stdout(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: failed to write to stdout: {e}");
        std::process::exit(5);
    }
}

/// A host builder for `manifest`, with the compile cache unless disabled.
fn host(manifest: &std::path::Path, cache: &Option<PathBuf>) -> portcullis::HostBuilder {
    let builder = portcullis::Host::builder().manifest(manifest);
    match cache {
        Some(dir) => builder.compile_cache(dir),
        None => builder,
    }
}

/// Where the CLI keeps compiled plugins.
fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("PORTCULLIS_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("portcullis")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("portcullis")))
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(format!("failed to start the async runtime: {e}")))
}

fn init_tracing(verbose: u8) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "portcullis=debug",
        _ => "portcullis=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person: `2>file` gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn hash(files: &[PathBuf]) -> Result<ExitCode, Failure> {
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| Failure::Config {
            message: format!("failed to read `{}`: {e}", file.display()),
            hint: None,
        })?;
        outln!("{}  {}", portcullis::sha256_hex(&bytes), file.display());
    }
    Ok(ExitCode::SUCCESS)
}
