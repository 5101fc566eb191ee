//! Legacy sessions bound to the token that opened them: a request naming
//! a session (`Mcp-Session-Id`) is served only for the token whose
//! `initialize` created it, so one token holder cannot act in, or read
//! the server's requests of, another's session even with its id.

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Past this many remembered sessions, the ones rmcp has closed are
/// forgotten.
const PRUNE_ABOVE: usize = 1024;

/// Which token opened each live session.
pub(super) struct Owners {
    manager: Arc<LocalSessionManager>,
    owners: Mutex<HashMap<String, Option<String>>>,
}

impl Owners {
    pub(super) fn new(manager: Arc<LocalSessionManager>) -> Owners {
        Owners {
            manager,
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `caller` may use `session`: a session opened by another
    /// token is refused; an unknown one is left to rmcp (which answers
    /// 404).
    pub(super) fn allows(&self, session: &str, caller: Option<&str>) -> bool {
        let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        owners
            .get(session)
            .is_none_or(|owner| owner.as_deref() == caller)
    }

    /// Records that `caller` opened `session`.
    pub(super) async fn opened(&self, session: &str, caller: Option<String>) {
        let crowded = {
            let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
            owners.insert(session.to_string(), caller);
            owners.len() > PRUNE_ABOVE
        };
        if crowded {
            let live = self.manager.sessions.read().await;
            let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
            owners.retain(|id, _| live.contains_key(id.as_str()));
        }
    }
}
