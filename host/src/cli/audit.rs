//! `portcullis audit verify`: check an audit log's hash chains and,
//! against a head checkpoint, that nothing was cut from the end.

use super::Failure;
use portcullis::{AuditHead, verify_log};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Verify an audit log: report the first record that was edited,
    /// deleted, reordered or inserted, or say it is intact.
    #[command(after_help = "\
Prints the head of every writer (its last sequence number and sha256). Keep
it where the log's writer cannot rewrite it (--write-head FILE), and a later
`verify --head FILE` also detects records cut from the end of the log.
A torn last line (an interrupted write) is reported, not fatal.

Exit codes: 0 intact, 1 not intact, 3 a file cannot be read.")]
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The audit log (JSON Lines).
    file: PathBuf,
    /// A head checkpoint written earlier by `--write-head`.
    #[arg(long, value_name = "FILE")]
    head: Option<PathBuf>,
    /// Write the heads of this log to FILE (JSON).
    #[arg(long, value_name = "FILE")]
    write_head: Option<PathBuf>,
}

pub(crate) fn run(command: &Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Verify(args) => verify(args),
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Config {
        message: format!("failed to read {what} `{}`: {e}", path.display()),
        hint: None,
    })
}

fn verify(args: &VerifyArgs) -> Result<ExitCode, Failure> {
    let log = read(&args.file, "the audit log")?;
    let heads: Vec<AuditHead> = match &args.head {
        None => Vec::new(),
        Some(path) => serde_json::from_slice(&read(path, "the head checkpoint")?).map_err(|e| {
            Failure::Config {
                message: format!("invalid head checkpoint `{}`: {e}", path.display()),
                hint: Some("write one with `portcullis audit verify LOG --write-head FILE`".into()),
            }
        })?,
    };
    let report = match verify_log(&log, &heads) {
        Ok(report) => report,
        Err(tamper) => {
            eprintln!("error: `{}` is not intact: {tamper}", args.file.display());
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(line) = report.torn_line {
        eprintln!("warning: line {line} is torn (an interrupted write); it was not checked");
    }
    for head in &report.heads {
        println!(
            "head {} seq {} sha256 {}",
            head.writer, head.seq, head.sha256
        );
    }
    if let Some(path) = &args.write_head {
        let text = serde_json::to_string_pretty(&report.heads)
            .map_err(|e| Failure::Internal(format!("failed to serialise the heads: {e}")))?;
        std::fs::write(path, text + "\n").map_err(|e| Failure::Config {
            message: format!("failed to write `{}`: {e}", path.display()),
            hint: None,
        })?;
    }
    println!(
        "ok: `{}` is intact: {} records from {} writer(s){}",
        args.file.display(),
        report.records,
        report.heads.len(),
        if heads.is_empty() {
            ""
        } else {
            ", and matches the head checkpoint"
        }
    );
    Ok(ExitCode::SUCCESS)
}
