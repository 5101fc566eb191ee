//! Re-pinning: rewrites a manifest's `sha256` pins from the component
//! files they name (and its `tools_sha256` pins, which the CLI works out
//! by loading each component), keeping the file's comments and layout,
//! and keeps the pinned tool lists beside the manifest
//! ([`tool_lock_path`]) so a later change can be shown as a diff. The
//! CLI's `portcullis pin` is a thin layer over [`Repin`].

use crate::fs::{folder_of, write_atomically};
use crate::hash::sha256_hex;
use std::path::{Path, PathBuf};

/// One plugin's pin before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pin {
    /// The plugin's name.
    pub plugin: String,
    /// Its `source`, as written in the manifest.
    pub source: String,
    /// The pin the manifest holds, if any.
    pub old: Option<String>,
    /// The sha256 of the component's bytes now.
    pub new: String,
    /// The tool-list pin the manifest holds, if any.
    pub old_tools: Option<String>,
}

impl Pin {
    /// Whether the manifest already pins the current bytes.
    pub fn is_current(&self) -> bool {
        self.old.as_deref() == Some(self.new.as_str())
    }
}

/// Why a manifest could not be re-pinned: the message, and what to do
/// about it when the user can act.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepinError {
    /// What is wrong, naming the manifest or plugin.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl std::fmt::Display for RepinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RepinError {}

/// A manifest with its pins worked out (and updated in memory), ready to
/// be written back.
#[derive(Debug)]
pub struct Repin {
    path: PathBuf,
    doc: toml_edit::DocumentMut,
    pins: Vec<Pin>,
    tools_changed: bool,
}

impl Repin {
    /// Reads the manifest at `path` and hashes the component of each plugin
    /// (of `only`, if not empty), relative to the manifest's folder.
    ///
    /// # Errors
    ///
    /// An unreadable or invalid manifest, a plugin of `only` it lacks, a
    /// plugin entry without a `source`, or an unreadable component.
    pub fn read(path: &Path, only: &[String]) -> Result<Repin, RepinError> {
        let config = |message: String| RepinError {
            message,
            hint: None,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| config(format!("failed to read manifest `{}`: {e}", path.display())))?;
        let mut doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e| config(format!("invalid manifest `{}`: {e}", path.display())))?;
        let base = folder_of(path);

        let Some(plugins) = doc.get_mut("plugins").and_then(|p| p.as_table_like_mut()) else {
            return Err(config(format!(
                "manifest `{}` has no `[plugins.NAME]` tables",
                path.display()
            )));
        };
        for wanted in only {
            if plugins.get(wanted).is_none() {
                return Err(config(format!(
                    "manifest `{}` has no plugin `{wanted}`",
                    path.display()
                )));
            }
        }

        let mut pins = Vec::new();
        for (name, entry) in plugins.iter_mut() {
            if !only.is_empty() && !only.iter().any(|p| p == name.get()) {
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
            let bytes = std::fs::read(&file).map_err(|e| RepinError {
                message: format!("plugin `{name}`: failed to read `{}`: {e}", file.display()),
                hint: Some(
                    "build the plugin first (for the bundled ones: `plugins/build.sh`)".into(),
                ),
            })?;
            let new = sha256_hex(&bytes);
            let old = table
                .get("sha256")
                .and_then(|s| s.as_str())
                .map(str::to_string);
            if old.as_deref() != Some(new.as_str()) {
                table.insert("sha256", toml_edit::value(new.clone()));
            }
            let old_tools = table
                .get("tools_sha256")
                .and_then(|s| s.as_str())
                .map(str::to_string);
            pins.push(Pin {
                plugin: name,
                source,
                old,
                new,
                old_tools,
            });
        }
        Ok(Repin {
            path: path.to_path_buf(),
            doc,
            pins,
            tools_changed: false,
        })
    }

    /// Every pin considered, in the manifest's order.
    pub fn pins(&self) -> &[Pin] {
        &self.pins
    }

    /// The manifest's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets plugin `plugin`'s `tools_sha256` pin (written by
    /// [`write`](Self::write)).
    pub fn set_tools_sha256(&mut self, plugin: &str, hex: &str) {
        if let Some(table) = self
            .doc
            .get_mut("plugins")
            .and_then(|p| p.get_mut(plugin))
            .and_then(|t| t.as_table_like_mut())
            && table.get("tools_sha256").and_then(|s| s.as_str()) != Some(hex)
        {
            table.insert("tools_sha256", toml_edit::value(hex));
            self.tools_changed = true;
        }
    }

    /// Writes the updated manifest in place (atomically: a reader sees the
    /// old file or the whole new one), if any pin changed.
    ///
    /// # Errors
    ///
    /// The manifest cannot be written.
    pub fn write(&self) -> std::io::Result<()> {
        if self.pins.iter().all(Pin::is_current) && !self.tools_changed {
            return Ok(());
        }
        write_atomically(&self.path, self.doc.to_string().as_bytes())
    }
}

/// Where the tool lists pinned for the manifest at `manifest` are kept:
/// `NAME.tools.json` beside it (so it is as out of reach of grants as the
/// manifest itself).
pub fn tool_lock_path(manifest: &Path) -> PathBuf {
    let stem = manifest
        .file_stem()
        .map_or_else(|| "portcullis".into(), |s| s.to_string_lossy().into_owned());
    folder_of(manifest).join(format!("{stem}.tools.json"))
}

/// The pinned tool lists recorded for `manifest`, by plugin (empty when
/// there is no record or it does not parse: it only serves diffs, and is
/// trusted only where it hashes to the manifest's pin).
pub fn read_tool_lock(manifest: &Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    std::fs::read(tool_lock_path(manifest))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Records the pinned tool lists for `manifest` (atomically).
///
/// # Errors
///
/// The file cannot be written.
pub fn write_tool_lock(
    manifest: &Path,
    lists: &std::collections::BTreeMap<String, serde_json::Value>,
) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(lists).map_err(std::io::Error::other)?;
    text.push('\n');
    write_atomically(&tool_lock_path(manifest), text.as_bytes())
}
