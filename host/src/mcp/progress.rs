//! Progress of a call, for a client that sent a progress token with its
//! `tools/call`: `notifications/progress` when the call starts, once every
//! [`PERIOD`] while it runs (a call may wait for approval or run up to its
//! time limit), and when it ends, before the result. Progress counts the
//! notifications (it must only grow); the total is known only at the end.

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RoleServer};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often a running call reports.
pub(super) const PERIOD: Duration = Duration::from_secs(1);

/// Reports one call's progress until [`Reporter::finish`].
pub(super) struct Reporter {
    done: CancellationToken,
    task: JoinHandle<()>,
}

impl Reporter {
    /// Sends the first notification and keeps reporting until finished.
    pub(super) fn start(peer: Peer<RoleServer>, token: ProgressToken, tool: String) -> Reporter {
        let done = CancellationToken::new();
        let stop = done.clone();
        let task = tokio::spawn(async move {
            let send = |progress: u32, total: Option<u32>, message: String| {
                let mut param = ProgressNotificationParam::new(token.clone(), f64::from(progress))
                    .with_message(message);
                if let Some(total) = total {
                    param = param.with_total(f64::from(total));
                }
                let peer = peer.clone();
                async move {
                    if let Err(e) = peer.notify_progress(param).await {
                        tracing::debug!(error = %e, "a progress notification was not sent");
                    }
                }
            };
            send(0, None, format!("`{tool}` started")).await;
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + PERIOD, PERIOD);
            let mut seconds = 0u32;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        seconds += 1;
                        send(seconds, None, format!("`{tool}` running for {seconds} s")).await;
                    }
                    () = stop.cancelled() => break,
                }
            }
            let last = seconds + 1;
            send(last, Some(last), format!("`{tool}` ended")).await;
        });
        Reporter { done, task }
    }

    /// Sends the last notification; returns once it is sent, so it comes
    /// before the result.
    pub(super) async fn finish(mut self) {
        self.done.cancel();
        if let Err(e) = (&mut self.task).await {
            tracing::debug!(error = %e, "the progress task failed");
        }
    }
}

impl Drop for Reporter {
    /// A call that ends without a result (cancelled) stops reporting.
    fn drop(&mut self) {
        self.task.abort();
    }
}
