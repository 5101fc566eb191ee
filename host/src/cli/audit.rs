//! `portcullis audit verify` and `portcullis audit head`: check an audit
//! log's hash chains and, against a head checkpoint, that nothing was cut
//! from the end and no chain was removed; print the checkpoint to keep.

use super::Failure;
use portcullis::{AuditHead, verify_log};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Verify an audit log: report the first record that was edited,
    /// deleted, reordered or inserted, or say it is intact.
    #[command(after_help = "\
Prints the head of every chain (its id, last sequence number and sha256) and
its checkpoint, `CHAIN:SEQ:SHA256`. Keep the checkpoint where the log's
writer cannot rewrite it (a ticket, another machine, --write-head FILE), and
a later `verify --head CHAIN:SEQ:SHA256` (or `--head FILE`) also detects
records cut from the end of the log, or a whole chain removed.
A torn last line (an interrupted write) is reported, not fatal.

Exit codes: 0 intact, 1 not intact, 3 a file cannot be read.")]
    Verify(VerifyArgs),
    /// Print the head checkpoint of every chain of an intact audit log,
    /// one `CHAIN:SEQ:SHA256` per line, for `verify --head`.
    #[command(after_help = "Exit codes: 0 printed, 1 the log is not intact, 3 it cannot be read.")]
    Head(HeadArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct HeadArgs {
    /// The audit log (JSON Lines).
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The audit log (JSON Lines).
    file: PathBuf,
    /// A head checkpoint: `CHAIN:SEQ:SHA256` as `audit head` or `verify`
    /// printed it, or a FILE written by `--write-head`. Repeat for several
    /// chains.
    #[arg(long, value_name = "CHECKPOINT")]
    head: Vec<String>,
    /// Write the heads of this log to FILE (JSON).
    #[arg(long, value_name = "FILE")]
    write_head: Option<PathBuf>,
}

pub(crate) fn run(command: &Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Verify(args) => verify(args),
        Command::Head(args) => head(args),
    }
}

/// `CHAIN:SEQ:SHA256`, the checkpoint of one chain.
fn checkpoint(head: &AuditHead) -> String {
    format!("{}:{}:{}", head.chain, head.seq, head.sha256)
}

/// A checkpoint given inline, if `text` is one.
fn parse_checkpoint(text: &str) -> Option<AuditHead> {
    let mut parts = text.rsplitn(3, ':');
    let sha256 = parts.next()?;
    let seq = parts.next()?.parse().ok()?;
    let chain = parts.next()?;
    let hex = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && !chain.is_empty()).then(|| AuditHead {
        chain: chain.to_string(),
        seq,
        sha256: sha256.to_ascii_lowercase(),
    })
}

fn heads(given: &[String]) -> Result<Vec<AuditHead>, Failure> {
    let mut heads = Vec::new();
    for text in given {
        if let Some(head) = parse_checkpoint(text) {
            heads.push(head);
            continue;
        }
        let path = Path::new(text);
        let parsed: Vec<AuditHead> = serde_json::from_slice(&read(path, "the head checkpoint")?)
            .map_err(|e| Failure::Config {
                message: format!("invalid head checkpoint `{}`: {e}", path.display()),
                hint: Some(
                    "give `CHAIN:SEQ:SHA256` as `portcullis audit head LOG` prints it, or a file written by `portcullis audit verify LOG --write-head FILE`".into(),
                ),
            })?;
        heads.extend(parsed);
    }
    Ok(heads)
}

fn head(args: &HeadArgs) -> Result<ExitCode, Failure> {
    let log = read(&args.file, "the audit log")?;
    match verify_log(&log, &[]) {
        Ok(report) => {
            for head in &report.heads {
                println!("{}", checkpoint(head));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(tamper) => {
            eprintln!("error: `{}` is not intact: {tamper}", args.file.display());
            Ok(ExitCode::from(1))
        }
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
    let heads = heads(&args.head)?;
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
    for line in &report.interrupted {
        eprintln!(
            "warning: line {line} is a record cut short by an interrupted write; the chain goes around it"
        );
    }
    for head in &report.heads {
        println!(
            "head {} seq {} sha256 {} (checkpoint {})",
            head.chain,
            head.seq,
            head.sha256,
            checkpoint(head)
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
        "ok: `{}` is intact: {} records in {} chain(s){}",
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
