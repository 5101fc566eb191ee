//! A cache of compiled plugins, so a host (or each `portcullis call`) does
//! not recompile every component at start.
//!
//! The key is the sha256 of the component's bytes *after* they matched the
//! pin, plus a fingerprint of the engine's settings: a cached artifact is
//! only ever used for exactly the pinned bytes, compiled by a compatible
//! engine. Loading a compiled artifact is trusting it (wasmtime cannot
//! verify machine code), so:
//!
//! - each artifact has a sidecar with its own sha256, checked before it is
//!   loaded: a corrupted or half-written artifact is a miss, never a crash;
//! - the directory is created private (0700) and a cache directory that
//!   others can write is refused with a warning: whoever can write the cache
//!   can run code in the host, so it must be as private as the host binary;
//! - every failure is a miss: the plugin is compiled from its pinned bytes
//!   and nothing about its grants or limits changes.

use crate::hash::sha256_hex;
use crate::sandbox::Sandbox;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;

/// A directory of compiled plugins.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// Opens (creating if needed) the cache at `dir`.
    ///
    /// # Errors
    ///
    /// Why the directory cannot serve as a cache: it cannot be created, is
    /// not a directory, or others can write to it.
    pub(crate) fn open(dir: &Path) -> Result<CompileCache, String> {
        crate::fs::private_dir(dir)
            .map_err(|e| format!("{e}; compiled code from it would run in the host"))?;
        Ok(CompileCache {
            dir: dir.to_path_buf(),
        })
    }

    fn paths(&self, sandbox: &Sandbox, component_sha256: &str) -> (PathBuf, PathBuf) {
        let stem = format!("{component_sha256}-{}", sandbox.fingerprint());
        (
            self.dir.join(format!("{stem}.cwasm")),
            self.dir.join(format!("{stem}.sha256")),
        )
    }

    /// The compiled component for these (already pin-checked) bytes, from
    /// the cache if a verified artifact is there, else compiled and stored.
    ///
    /// # Errors
    ///
    /// Only when the bytes do not compile; cache problems are misses.
    pub(crate) fn compile(
        &self,
        sandbox: &Sandbox,
        component_sha256: &str,
        bytes: &[u8],
    ) -> Result<Component, String> {
        let (artifact, sidecar) = self.paths(sandbox, component_sha256);
        if let Some(component) = self.load(sandbox, &artifact, &sidecar) {
            tracing::debug!(artifact = %artifact.display(), "plugin loaded from the compile cache");
            return Ok(component);
        }
        let compiled = sandbox.precompile(bytes)?;
        let component = sandbox.deserialize(&compiled)?;
        if let Err(e) = store(&artifact, &sidecar, &compiled) {
            tracing::warn!(cache = %self.dir.display(), "cannot write to the compile cache: {e}");
        }
        Ok(component)
    }

    fn load(&self, sandbox: &Sandbox, artifact: &Path, sidecar: &Path) -> Option<Component> {
        let expected = std::fs::read_to_string(sidecar).ok()?;
        let bytes = std::fs::read(artifact).ok()?;
        if sha256_hex(&bytes) != expected.trim() {
            tracing::warn!(artifact = %artifact.display(), "compile cache entry does not match its checksum; recompiling");
            return None;
        }
        match sandbox.deserialize(&bytes) {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(artifact = %artifact.display(), "unusable compile cache entry ({e}); recompiling");
                None
            }
        }
    }
}

/// Writes the artifact, then its checksum, each through a temporary file
/// and a rename: a reader sees a complete pair or a miss.
fn store(artifact: &Path, sidecar: &Path, compiled: &[u8]) -> std::io::Result<()> {
    crate::fs::write_atomically(artifact, compiled)?;
    crate::fs::write_atomically(sidecar, sha256_hex(compiled).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component() -> Vec<u8> {
        // Wrap a core module so that there is some code to compile.
        let wat = r#"(component
            (core module $m (func (export "f") (result i32) i32.const 7))
            (core instance (instantiate $m)))"#;
        wat::parse_str(wat).expect("wat")
    }

    fn entries(dir: &Path, extension: &str) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .expect("read dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == extension))
            .collect()
    }

    /// A cache in a temp dir holding one compiled component.
    struct Filled {
        sandbox: Sandbox,
        _dir: tempfile::TempDir,
        cache: CompileCache,
        bytes: Vec<u8>,
        sha: String,
        artifact: PathBuf,
        sidecar: PathBuf,
    }

    impl Filled {
        fn new() -> Filled {
            let sandbox = Sandbox::new().expect("sandbox");
            let dir = tempfile::tempdir().expect("temp dir");
            let cache = CompileCache::open(&dir.path().join("cache")).expect("cache");
            let bytes = component();
            let sha = sha256_hex(&bytes);
            cache.compile(&sandbox, &sha, &bytes).expect("compiles");
            let (artifact, sidecar) = cache.paths(&sandbox, &sha);
            Filled {
                sandbox,
                _dir: dir,
                cache,
                bytes,
                sha,
                artifact,
                sidecar,
            }
        }

        fn hit(&self) -> bool {
            self.cache
                .load(&self.sandbox, &self.artifact, &self.sidecar)
                .is_some()
        }
    }

    #[test]
    fn second_compile_comes_from_a_verified_artifact() {
        let f = Filled::new();
        let artifacts = entries(f.artifact.parent().expect("dir"), "cwasm");
        assert_eq!(artifacts, std::slice::from_ref(&f.artifact));
        assert!(f.hit());
    }

    #[test]
    fn corrupted_artifact_is_a_miss_and_is_replaced() {
        let f = Filled::new();
        let mut tampered = std::fs::read(&f.artifact).expect("artifact");
        let middle = tampered.len() / 2;
        tampered[middle] ^= 0x40;
        std::fs::write(&f.artifact, &tampered).expect("write");
        assert!(!f.hit(), "a flipped bit must not load");
        // The next compile replaces it with a good artifact.
        f.cache
            .compile(&f.sandbox, &f.sha, &f.bytes)
            .expect("compiles");
        assert!(f.hit());
    }

    #[test]
    fn missing_checksum_is_a_miss() {
        let f = Filled::new();
        std::fs::remove_file(&f.sidecar).expect("remove");
        assert!(!f.hit());
    }

    #[cfg(unix)]
    #[test]
    fn cache_writable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = CompileCache::open(&shared).expect_err("must be refused");
        assert!(err.contains("other users"), "{err}");
        // A new cache directory is created private.
        let private = dir.path().join("private");
        CompileCache::open(&private).expect("cache");
        let mode = std::fs::metadata(&private)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
