//! Core dumps of trapped calls, for tool authors debugging a crash: written
//! off the async thread, under unique names, at most [`MAX_CORE_DUMPS`]
//! per host, and named (never with their folder) in the call's error.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where core dumps go, and how many this host wrote.
pub(crate) struct CoreDumps {
    dir: PathBuf,
    written: AtomicU64,
}

/// Core dumps one host writes at most: a plugin that traps on every call
/// must not fill the disk.
const MAX_CORE_DUMPS: u64 = 16;

impl CoreDumps {
    /// Dumps go to `dir`, created private if missing.
    ///
    /// # Errors
    ///
    /// Why `dir` is not a directory only this user can write.
    pub(crate) fn new(dir: PathBuf) -> Result<CoreDumps, String> {
        crate::fs::private_dir(&dir)?;
        Ok(CoreDumps {
            dir,
            written: AtomicU64::new(0),
        })
    }

    /// Writes `bytes` as a new dump of `plugin`'s call; returns the text to
    /// add to the call's error. The agent sees only the file's name; the
    /// operator's log has the whole path.
    pub(crate) async fn write(&self, plugin: &str, call_id: u64, bytes: Vec<u8>) -> String {
        if self.written.fetch_add(1, Ordering::Relaxed) >= MAX_CORE_DUMPS {
            return format!(" (no core dump: this host already wrote {MAX_CORE_DUMPS})");
        }
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        // Unique across hosts and runs sharing the directory.
        let name = format!(
            "{plugin}-{millis}-{}-{call_id}.coredump",
            std::process::id()
        );
        let path = self.dir.join(&name);
        let target = path.clone();
        let written =
            tokio::task::spawn_blocking(move || crate::fs::write_atomically(&target, &bytes)).await;
        match written {
            Ok(Ok(())) => {
                tracing::warn!(plugin, call_id, path = %path.display(), "core dump written");
                format!(" (core dump: {name})")
            }
            Ok(Err(e)) => {
                tracing::warn!(plugin, call_id, "core dump not written: {e}");
                " (the core dump could not be written)".into()
            }
            Err(e) => {
                tracing::warn!(plugin, call_id, "core dump not written: {e}");
                " (the core dump could not be written)".into()
            }
        }
    }
}
