//! A cache of compiled plugins, so a host (or each `portcullis call`) does
//! not recompile every component at start.
//!
//! The key is the sha256 of the component's bytes *after* they matched the
//! pin, plus a fingerprint of the engine's settings: a cached artifact is
//! only ever used for exactly the pinned bytes, compiled by a compatible
//! engine. Loading a compiled artifact is trusting it (wasmtime cannot
//! verify machine code), so:
//!
//! - each artifact has a sidecar with a keyed BLAKE3 MAC over the
//!   component's sha256, the engine fingerprint and the artifact's bytes
//!   (BLAKE3's keyed mode is a MAC, ~4x the speed of HMAC-SHA256 on the
//!   megabytes of native code a host authenticates at start), keyed by a
//!   random 32-byte key made on first use (`key`, 0600, in the cache
//!   directory, which no grant may contain): a checksum anyone can
//!   recompute would let whoever writes the folder plant native code, and
//!   binding the key fields means an artifact of another component (or
//!   engine) moved under this name is a miss, never loaded;
//! - the directory is created private (0700); one that is a symlink, that
//!   another user owns, or that others can write is refused with a warning:
//!   whoever can write the cache can run code in the host, so it must be as
//!   private as the host binary. Files in it are opened without following
//!   symlinks;
//! - every failure is a miss: the plugin is compiled from its pinned bytes
//!   and nothing about its grants or limits changes.

use crate::sandbox::Sandbox;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;

/// Bytes of the authentication key.
const KEY_BYTES: usize = 32;

/// A directory of compiled plugins.
#[derive(Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache")
            .field("dir", &self.dir)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl CompileCache {
    /// Opens (creating if needed) the cache at `dir`, and its key.
    ///
    /// # Errors
    ///
    /// Why the directory cannot serve as a cache: it cannot be created, is
    /// not a directory, is a symlink, belongs to another user, others can
    /// write to it, or its key is unusable.
    pub(crate) fn open(dir: &Path) -> Result<CompileCache, String> {
        crate::fs::private_dir(dir)
            .map_err(|e| format!("{e}; compiled code from it would run in the host"))?;
        let key = key(&dir.join("key"))?;
        Ok(CompileCache {
            dir: dir.to_path_buf(),
            key,
        })
    }

    fn paths(&self, sandbox: &Sandbox, component_sha256: &str) -> (PathBuf, PathBuf) {
        let stem = format!("{component_sha256}-{}", sandbox.fingerprint());
        (
            self.dir.join(format!("{stem}.cwasm")),
            self.dir.join(format!("{stem}.mac")),
        )
    }

    /// The sidecar's text: the MAC of the artifact under its key fields.
    fn tag(&self, sandbox: &Sandbox, component_sha256: &str, artifact: &[u8]) -> String {
        let mut mac = self.mac(sandbox, component_sha256, artifact.len() as u64);
        mac.update(artifact);
        crate::hash::hex(mac.finalize().as_bytes())
    }

    /// The MAC over the key fields and the length of an artifact of `len`
    /// bytes, ready for the artifact's bytes: keyed BLAKE3 of the
    /// length-prefixed domain, component sha256, engine fingerprint and
    /// artifact.
    fn mac(&self, sandbox: &Sandbox, component_sha256: &str, len: u64) -> blake3::Hasher {
        let mut mac = blake3::Hasher::new_keyed(&self.key);
        let fingerprint = sandbox.fingerprint();
        for part in [
            &b"portcullis compile cache v2"[..],
            component_sha256.as_bytes(),
            fingerprint.as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.update(&len.to_le_bytes());
        mac
    }

    /// The compiled component for these (already pin-checked) bytes, from
    /// the cache if an authenticated artifact is there, else compiled and
    /// stored.
    ///
    /// # Errors
    ///
    /// Only when the bytes do not compile; cache problems are misses.
    #[cfg(test)]
    pub(crate) fn compile(
        &self,
        sandbox: &Sandbox,
        component_sha256: &str,
        bytes: &[u8],
    ) -> Result<Component, String> {
        if let Some(component) = self.load(sandbox, component_sha256) {
            tracing::debug!(
                component = component_sha256,
                "plugin loaded from the compile cache"
            );
            return Ok(component);
        }
        self.compile_afresh(sandbox, component_sha256, bytes)
    }

    /// Compiles `bytes` (already pin-checked: their sha256 is
    /// `component_sha256`) and stores the artifact for next time.
    ///
    /// # Errors
    ///
    /// Only when the bytes do not compile; a cache that cannot be written
    /// is a warning.
    pub(crate) fn compile_afresh(
        &self,
        sandbox: &Sandbox,
        component_sha256: &str,
        bytes: &[u8],
    ) -> Result<Component, String> {
        let compiled = sandbox.precompile(bytes)?;
        let component = sandbox.deserialize(&compiled)?;
        let (artifact, sidecar) = self.paths(sandbox, component_sha256);
        let tag = self.tag(sandbox, component_sha256, &compiled);
        if let Err(e) = store(&artifact, &sidecar, &compiled, &tag) {
            tracing::warn!(cache = %self.dir.display(), "cannot write to the compile cache: {e}");
        }
        Ok(component)
    }

    /// The component compiled from the bytes whose sha256 is
    /// `component_sha256`, if an authenticated artifact is cached.
    ///
    /// On Linux the artifact is copied into a sealed in-memory file, the
    /// MAC is computed over the bytes as they are copied (see
    /// `SealedCopy::of` for who could reach the copy before the seal),
    /// and wasmtime maps the copy: no second copy into executable memory,
    /// data segments mapped from it copy-on-write, and nothing can change
    /// or cut the bytes after the check. Where that cannot be done, the
    /// artifact is read into memory, checked, and wasmtime copies it.
    pub(crate) fn load(&self, sandbox: &Sandbox, component_sha256: &str) -> Option<Component> {
        let (artifact, sidecar) = self.paths(sandbox, component_sha256);
        let expected = crate::fs::read_nofollow(&sidecar).ok()?;
        let file = crate::fs::open_nofollow(&artifact).ok()?;
        let len = file.metadata().ok()?.len();
        // Whether `mac`, fed the artifact's bytes, matches the sidecar's tag
        // (a warning when not).
        let authentic = |mac: blake3::Hasher| {
            let tag = crate::hash::hex(mac.finalize().as_bytes());
            let authentic = crate::hash::constant_time_eq(tag.as_bytes(), expected.trim_ascii());
            if !authentic {
                tracing::warn!(artifact = %artifact.display(), "compile cache entry fails its authentication; recompiling");
            }
            authentic
        };
        #[cfg(target_os = "linux")]
        {
            let mut mac = self.mac(sandbox, component_sha256, len);
            match crate::fs::SealedCopy::of(&file, len, |chunk| {
                mac.update(chunk);
            }) {
                Ok(copy) => {
                    if !authentic(mac) {
                        return None;
                    }
                    let component = sandbox.deserialize_sealed(&copy).or_else(|e| {
                        // A mapping wasmtime may not make executable (a `memfd`
                        // without exec rights, no `/proc`): load the bytes.
                        tracing::debug!(error = %e, "cannot map the sealed artifact; copying it");
                        sandbox.deserialize(&copy.bytes().map_err(|e| e.to_string())?)
                    });
                    return loaded(&artifact, component);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot make a sealed copy of the artifact; reading it");
                }
            }
        }
        // Never more than one byte past the length: a growing file is a
        // miss, not a read without end (and a file of another length than
        // the MAC's prefix says fails it, with the same warning).
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&file, len + 1), &mut bytes).ok()?;
        let mut mac = self.mac(sandbox, component_sha256, len);
        mac.update(&bytes);
        if !authentic(mac) || bytes.len() as u64 != len {
            return None;
        }
        loaded(&artifact, sandbox.deserialize(&bytes))
    }
}

/// The loaded component, or a miss with the reason logged.
fn loaded(artifact: &Path, component: Result<Component, String>) -> Option<Component> {
    match component {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(artifact = %artifact.display(), "unusable compile cache entry ({e}); recompiling");
            None
        }
    }
}

/// The cache's key: read (not through a symlink, only if private and the
/// right size), or made from the OS's randomness and created 0600.
fn key(path: &Path) -> Result<[u8; KEY_BYTES], String> {
    let unusable = |why: String| format!("compile cache key `{}` {why}", path.display());
    match crate::fs::open_nofollow(path) {
        Ok(file) => {
            use std::io::Read as _;
            #[cfg(unix)]
            {
                use std::os::unix::fs::{MetadataExt, PermissionsExt};
                let meta = file.metadata().map_err(|e| unusable(e.to_string()))?;
                if !meta.is_file()
                    || meta.permissions().mode() & 0o077 != 0
                    || meta.uid() != rustix::process::geteuid().as_raw()
                {
                    return Err(unusable("is not a private file of this user (0600)".into()));
                }
            }
            let mut bytes = Vec::new();
            file.take(KEY_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| unusable(e.to_string()))?;
            bytes
                .try_into()
                .map_err(|_| unusable(format!("is not {KEY_BYTES} bytes")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_key().map_err(|e| unusable(format!("cannot be made: {e}")))?;
            match crate::fs::create_private(path, &key) {
                Ok(()) => Ok(key),
                // Another host made it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self::key(path),
                Err(e) => Err(unusable(format!("cannot be created: {e}"))),
            }
        }
        Err(e) => Err(unusable(e.to_string())),
    }
}

/// 32 bytes from the OS's randomness.
fn random_key() -> std::io::Result<[u8; KEY_BYTES]> {
    use std::io::Read as _;
    let mut key = [0u8; KEY_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(key)
}

/// Writes the artifact, then its tag, each through a temporary file and a
/// rename: a reader sees a complete pair or a miss.
fn store(artifact: &Path, sidecar: &Path, compiled: &[u8], tag: &str) -> std::io::Result<()> {
    crate::fs::write_atomically(artifact, compiled)?;
    crate::fs::write_atomically(sidecar, tag.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256_hex;

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
            self.cache.load(&self.sandbox, &self.sha).is_some()
        }
    }

    #[test]
    fn second_compile_comes_from_a_verified_artifact() {
        let f = Filled::new();
        let artifacts = entries(f.artifact.parent().expect("dir"), "cwasm");
        assert_eq!(artifacts, std::slice::from_ref(&f.artifact));
        assert!(f.hit());
    }

    /// What a cached component runs is the bytes authenticated at load:
    /// cutting or rewriting the artifact file afterwards changes nothing
    /// (a mapping of the file itself would fault, or run the new bytes).
    #[test]
    fn a_loaded_artifact_does_not_depend_on_its_file_afterwards() {
        let f = Filled::new();
        let original = std::fs::read(&f.artifact).expect("artifact");
        let component = f.cache.load(&f.sandbox, &f.sha).expect("hit");
        #[cfg(target_os = "linux")]
        {
            let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
            let name = f.artifact.to_string_lossy();
            assert!(
                !maps.lines().any(|line| line.ends_with(name.as_ref())),
                "the artifact file itself is mapped"
            );
            assert!(
                maps.contains("memfd:portcullis-sealed"),
                "the sealed copy is not what is mapped"
            );
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f.artifact)
            .expect("open")
            .set_len(0)
            .expect("truncate");
        assert_eq!(component.serialize().expect("serialize"), original);
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
    fn a_checksum_is_not_enough_an_artifact_must_carry_the_keyed_tag() {
        // Reproduction 1 of issue 12: a plugin wrote an artifact and its
        // sha256 sidecar. Without the key no tag it writes is accepted.
        let f = Filled::new();
        let artifact = std::fs::read(&f.artifact).expect("artifact");
        std::fs::write(&f.sidecar, sha256_hex(&artifact)).expect("forge");
        assert!(!f.hit(), "a checksum sidecar must not authenticate");
        let other_key = CompileCache {
            dir: f.cache.dir.clone(),
            key: [7; KEY_BYTES],
        };
        std::fs::write(&f.sidecar, other_key.tag(&f.sandbox, &f.sha, &artifact)).expect("forge");
        assert!(!f.hit(), "a tag under another key must not authenticate");
    }

    #[test]
    fn an_artifact_of_another_component_moved_under_this_name_is_a_miss() {
        let f = Filled::new();
        let wat = r#"(component
            (core module $m (func (export "f") (result i32) i32.const 9))
            (core instance (instantiate $m)))"#;
        let other = wat::parse_str(wat).expect("wat");
        let other_sha = sha256_hex(&other);
        f.cache
            .compile(&f.sandbox, &other_sha, &other)
            .expect("compiles");
        let (other_artifact, other_sidecar) = f.cache.paths(&f.sandbox, &other_sha);
        std::fs::rename(&other_artifact, &f.artifact).expect("swap");
        std::fs::rename(&other_sidecar, &f.sidecar).expect("swap");
        assert!(!f.hit(), "a swapped pair must not load");
    }

    #[cfg(unix)]
    #[test]
    fn the_key_is_private_and_a_symlinked_artifact_is_a_miss() {
        use std::os::unix::fs::PermissionsExt;
        let f = Filled::new();
        let key = f.cache.dir.join("key");
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The same key next time.
        let again = CompileCache::open(&f.cache.dir).expect("reopen");
        assert_eq!(again.key, f.cache.key);
        // An artifact replaced by a symlink to a good copy is not followed.
        let copy = f.cache.dir.parent().expect("parent").join("copy.cwasm");
        std::fs::rename(&f.artifact, &copy).expect("move");
        std::os::unix::fs::symlink(&copy, &f.artifact).expect("symlink");
        assert!(!f.hit(), "a symlinked artifact must not load");
        // A key others can read is refused.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = CompileCache::open(&f.cache.dir).expect_err("refused");
        assert!(err.contains("private"), "{err}");
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
