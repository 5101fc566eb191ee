//! `portcullis:tool/log`: what a plugin logs during a call.
//!
//! Messages are kept in the store (at most [`caps::LOG_MESSAGES`], the rest
//! counted), scrubbed of secret values and cut to
//! [`caps::LOG_MESSAGE_BYTES`], then handed back in the call's `Run` (and
//! scrubbed once more there if the call fetched a secret value the host
//! did not know at load).

use super::bindings::portcullis::tool::log::{Host, Level};
use super::store::StoreData;
use crate::policy::caps;

/// Level of a plugin log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging information.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected the plugin recovered from.
    Warn,
    /// Something failed.
    Error,
}

/// One message a plugin logged during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level.
    pub level: LogLevel,
    /// The message, cut to 4 KiB.
    pub message: String,
}

impl Host for StoreData {
    fn log(&mut self, level: Level, message: String) {
        if self.logs.len() >= caps::LOG_MESSAGES {
            self.logs_dropped += 1;
            return;
        }
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        // Scrubbed before it is cut (a cut value would leave its prefix),
        // after a first cut that bounds the work.
        let mut message = message;
        crate::text::truncate(&mut message, caps::LOG_MESSAGE_BYTES * 2);
        let mut message = self.scrubber.scrub_str(&message).into_owned();
        crate::text::truncate(&mut message, caps::LOG_MESSAGE_BYTES);
        // Debug formatting escapes control characters: a plugin cannot
        // forge host log lines.
        tracing::debug!(plugin = %self.plugin, ?level, message = ?message, "plugin log");
        self.logs.push(LogRecord { level, message });
    }
}
