//! `portcullis pin`: rewrite a manifest's `sha256` pins from the component
//! files, keeping its comments and layout.

use super::Failure;
use portcullis::manifest::{Pin, Repin};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The manifest (`portcullis.toml`).
    manifest: PathBuf,
    /// Pin only these plugins (default: all).
    #[arg(long = "plugin", value_name = "NAME")]
    plugins: Vec<String>,
    /// Change nothing; exit with code 3 if a pin is missing or stale.
    #[arg(long)]
    check: bool,
}

pub(crate) fn run(args: &Args) -> Result<ExitCode, Failure> {
    let path = &args.manifest;
    let repin = Repin::read(path, &args.plugins).map_err(|e| Failure::Config {
        message: e.message,
        hint: e.hint,
    })?;
    let pins = repin.pins();
    let stale: Vec<&Pin> = pins.iter().filter(|p| !p.is_current()).collect();
    for pin in pins {
        let state = match (&pin.old, args.check) {
            (Some(old), _) if *old == pin.new => "unchanged",
            (None, true) => "MISSING",
            (Some(_), true) => "STALE",
            (None, false) => "pinned",
            (Some(_), false) => "updated",
        };
        outln!("{:<10} {}  {}  {}", state, pin.new, pin.plugin, pin.source);
    }

    if args.check {
        if stale.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        let names: Vec<&str> = stale.iter().map(|p| p.plugin.as_str()).collect();
        return Err(Failure::Config {
            message: format!("stale or missing pins: {}", names.join(", ")),
            hint: Some(format!(
                "if the new bytes are the ones you mean to run, run `portcullis pin {}`",
                path.display()
            )),
        });
    }
    repin
        .write()
        .map_err(|e| Failure::Internal(format!("failed to write `{}`: {e}", path.display())))?;
    Ok(ExitCode::SUCCESS)
}
