//! Error texts scrubbed of every secret value: kept beside the scrubber
//! so that `error` (below every step) never depends on `secrets`.

use super::Scrubber;
use crate::error::{Error, ToolError};

impl Error {
    /// The same error with `scrubber`'s secrets removed from every text
    /// that can carry plugin, caller or upstream data.
    pub(crate) fn scrubbed(mut self, scrubber: &Scrubber) -> Error {
        if scrubber.is_empty() {
            return self;
        }
        let texts: Vec<&mut String> = match &mut self {
            Error::InvalidArguments {
                pointer, reason, ..
            } => vec![pointer, reason],
            Error::LimitExceeded { detail, .. } => vec![detail],
            Error::Tool { error, .. } => match error {
                ToolError::InvalidInput(m)
                | ToolError::NotFound(m)
                | ToolError::Denied(m)
                | ToolError::Internal(m) => vec![m],
            },
            Error::Crashed { reason, .. }
            | Error::InvalidOutput { reason, .. }
            | Error::ApprovalDenied { reason, .. } => vec![reason],
            Error::UnknownTool { tool, .. } => vec![tool],
            Error::Audit(m) | Error::Internal(m) => vec![m],
            _ => Vec::new(),
        };
        for text in texts {
            if let std::borrow::Cow::Owned(clean) = scrubber.scrub_str(text) {
                *text = clean;
            }
        }
        self
    }
}
