//! `portcullis pin`: rewrite a manifest's `sha256` pins from the component
//! files, keeping its comments and layout.

use super::Failure;
use portcullis::sha256_hex;
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

/// One plugin's pin before and after.
struct Pin {
    plugin: String,
    source: String,
    old: Option<String>,
    new: String,
}

pub(crate) fn run(args: &Args) -> Result<ExitCode, Failure> {
    let path = &args.manifest;
    let config = |message: String| Failure::Config {
        message,
        hint: None,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| config(format!("failed to read manifest `{}`: {e}", path.display())))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| config(format!("invalid manifest `{}`: {e}", path.display())))?;
    let base = crate::util::folder_of(path);

    let Some(plugins) = doc.get_mut("plugins").and_then(|p| p.as_table_like_mut()) else {
        return Err(config(format!(
            "manifest `{}` has no `[plugins.NAME]` tables",
            path.display()
        )));
    };
    for wanted in &args.plugins {
        if plugins.get(wanted).is_none() {
            return Err(config(format!(
                "manifest `{}` has no plugin `{wanted}`",
                path.display()
            )));
        }
    }

    let mut pins = Vec::new();
    for (name, entry) in plugins.iter_mut() {
        if !args.plugins.is_empty() && !args.plugins.iter().any(|p| p == name.get()) {
            continue;
        }
        let name = name.get().to_string();
        let Some(table) = entry.as_table_like_mut() else {
            return Err(config(format!("plugin `{name}`: expected a table")));
        };
        let Some(source) = table
            .get("source")
            .and_then(|s| s.as_str())
            .map(str::to_string)
        else {
            return Err(config(format!(
                "plugin `{name}`: `source` is missing or not a string"
            )));
        };
        let file = base.join(&source);
        let bytes = std::fs::read(&file).map_err(|e| Failure::Config {
            message: format!("plugin `{name}`: failed to read `{}`: {e}", file.display()),
            hint: Some("build the plugin first (for the bundled ones: `plugins/build.sh`)".into()),
        })?;
        let new = sha256_hex(&bytes);
        let old = table
            .get("sha256")
            .and_then(|s| s.as_str())
            .map(str::to_string);
        if old.as_deref() != Some(new.as_str()) && !args.check {
            table.insert("sha256", toml_edit::value(new.clone()));
        }
        pins.push(Pin {
            plugin: name,
            source,
            old,
            new,
        });
    }

    let stale: Vec<&Pin> = pins
        .iter()
        .filter(|p| p.old.as_deref() != Some(&p.new))
        .collect();
    for pin in &pins {
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
    if !stale.is_empty() {
        crate::util::write_atomically(path, doc.to_string().as_bytes())
            .map_err(|e| Failure::Internal(format!("failed to write `{}`: {e}", path.display())))?;
    }
    Ok(ExitCode::SUCCESS)
}
