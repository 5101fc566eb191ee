//! The manifest (`portcullis.toml`) as written: the raw serde shape, with
//! unknown fields refused. [`crate::policy`] validates it.
//!
//! ```toml
//! [plugins.files]
//! source = "dist/files.wasm"          # relative to the manifest's folder
//! sha256 = "3db4739c…"                # `portcullis pin` writes it
//! dirs = [
//!   { host = "../docs", guest = "/docs" },                     # read-only
//!   { host = "out", guest = "/out", mode = "read-write" },
//! ]
//! env = { GREETING = "hello" }        # explicit, never secret
//!
//! [plugins.files.limits]
//! fuel = 1_000_000_000
//! memory = "64 MiB"
//! timeout = "5s"
//! output = "1 MiB"
//! stdio = "64 KiB"
//! ```

mod units;

pub use units::{ByteSize, HumanDuration, parse_duration, parse_size};

use crate::error::Error;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A whole manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Plugins by name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginEntry>,
}

/// One `[plugins.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// Path of the component, relative to the manifest's folder.
    pub source: PathBuf,
    /// The sha256 of the component's bytes, as 64 hex digits.
    pub sha256: Option<String>,
    /// Directory grants.
    #[serde(default)]
    pub dirs: Vec<DirEntry>,
    /// Environment variables the plugin sees (nothing else of the host's).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Resource limits; unset ones take the documented defaults.
    #[serde(default)]
    pub limits: LimitsEntry,
}

/// One directory grant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirEntry {
    /// Host directory, relative to the manifest's folder. Must exist.
    pub host: PathBuf,
    /// Absolute path at which the plugin sees it, e.g. `/docs`.
    pub guest: String,
    /// `read-only` (default) or `read-write`.
    #[serde(default)]
    pub mode: DirMode,
}

/// Access mode of a directory grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirMode {
    /// The plugin can read files and list directories.
    #[default]
    ReadOnly,
    /// The plugin can also create, write, rename and remove.
    ReadWrite,
}

/// `[plugins.NAME.limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsEntry {
    /// Fuel units (about one per WebAssembly instruction).
    pub fuel: Option<u64>,
    /// Total of all linear memories of one instance.
    pub memory: Option<ByteSize>,
    /// Wall-clock time of one call.
    pub timeout: Option<HumanDuration>,
    /// Size of the tool's output.
    pub output: Option<ByteSize>,
    /// Bytes kept of each of stdout and stderr; the rest is counted and
    /// discarded.
    pub stdio: Option<ByteSize>,
}

impl Manifest {
    /// Parses manifest text. `path` only labels errors.
    ///
    /// # Errors
    ///
    /// [`Error::Manifest`] naming the line, field and problem.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, Error> {
        toml::from_str(text).map_err(|e| {
            Error::manifest(path, e.to_string().trim_end().to_string()).with_hint(
                "see the manifest reference in the README; unknown fields are refused so typos cannot loosen a grant",
            )
        })
    }

    /// Reads and parses the manifest at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::ManifestRead`] if the file cannot be read, [`Error::Manifest`]
    /// if it does not parse.
    pub fn load(path: &Path) -> Result<Manifest, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ManifestRead {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(text, Path::new("m.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn full_manifest_parses() {
        let m = parse(
            r#"
            [plugins.files]
            source = "dist/files.wasm"
            sha256 = "00"
            dirs = [{ host = "docs", guest = "/docs" }, { host = "out", guest = "/out", mode = "read-write" }]
            env = { A = "b" }
            [plugins.files.limits]
            fuel = 10
            memory = "1 MiB"
            timeout = "2s"
            output = 1024
            "#,
        )
        .expect("parses");
        let files = &m.plugins["files"];
        assert_eq!(files.dirs[0].mode, DirMode::ReadOnly);
        assert_eq!(files.dirs[1].mode, DirMode::ReadWrite);
        assert_eq!(files.limits.memory, Some(ByteSize(1 << 20)));
        assert_eq!(files.limits.output, Some(ByteSize(1024)));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = parse("[plugins.a]\nsource = \"a.wasm\"\nnetwork = true\n")
            .expect_err("must be refused");
        assert!(err.contains("unknown field `network`"), "{err}");
        let err = parse("[plugins.a]\nsource = \"a.wasm\"\ndirs = [{ host = \"a\", guest = \"/a\", writable = true }]\n").expect_err("must be refused");
        assert!(err.contains("unknown field `writable`"), "{err}");
    }

    #[test]
    fn unknown_dir_mode_is_refused() {
        let err = parse("[plugins.a]\nsource = \"a.wasm\"\ndirs = [{ host = \"a\", guest = \"/a\", mode = \"rw\" }]\n").expect_err("must be refused");
        assert!(err.contains("unknown variant `rw`"), "{err}");
    }

    #[test]
    fn bare_timeout_number_is_refused() {
        let err = parse("[plugins.a]\nsource = \"a.wasm\"\n[plugins.a.limits]\ntimeout = 5\n")
            .expect_err("must be refused");
        assert!(err.contains("ambiguous"), "{err}");
    }
}
