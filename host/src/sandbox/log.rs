//! `portcullis:tool/log`: what a plugin logs during a call.
//!
//! The interface's host impl is with the store (`store.rs`); this file
//! holds what it keeps. Messages are kept in the store (at most [`caps::LOG_MESSAGES`], the rest
//! counted), scrubbed of secret values and cut to
//! [`caps::LOG_MESSAGE_BYTES`], then handed back in the call's `Run` (and
//! scrubbed once more there if the call fetched a secret value the host
//! did not know at load).

use super::bindings::portcullis::tool::log::Level;
use crate::policy::caps;
use crate::secrets::Scrubber;

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

/// What a plugin logged during one call: at most [`caps::LOG_MESSAGES`]
/// messages, the rest counted.
#[derive(Debug, Default)]
pub(super) struct Logs {
    pub(super) records: Vec<LogRecord>,
    pub(super) dropped: u64,
}

impl Logs {
    /// Keeps one message of `plugin`, scrubbed and cut, or counts it past
    /// the cap.
    pub(super) fn push(
        &mut self,
        level: Level,
        message: String,
        plugin: &str,
        scrubber: &Scrubber,
    ) {
        if self.records.len() >= caps::LOG_MESSAGES {
            self.dropped += 1;
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
        let mut message = scrubber.scrub_str(&message).into_owned();
        crate::text::truncate(&mut message, caps::LOG_MESSAGE_BYTES);
        // Debug formatting escapes control characters: a plugin cannot
        // forge host log lines.
        tracing::debug!(plugin = %plugin, ?level, message = ?message, "plugin log");
        self.records.push(LogRecord { level, message });
    }
}
