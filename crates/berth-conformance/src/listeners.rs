//! The open `subscriptions/listen` streams of the stateless lifecycle.
//!
//! In `2026-07-28` a client that wants list-changed notifications keeps a
//! `subscriptions/listen` request open, and the change that triggers a notification
//! arrives as another, unrelated HTTP request. Both requests reach clones of the same
//! [`crate::ConformanceServer`], so the streams are registered here, in state that
//! the clones share, and a change is fanned out to all of them.

use std::sync::Mutex;

use rmcp::service::{SubscriptionSendError, SubscriptionSink};

/// Which list changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListChange {
    /// The tool list changed.
    Tools,
    /// The prompt list changed.
    Prompts,
}

/// The sinks of every open listen stream, each under a serial number.
///
/// The serial, not the JSON-RPC id, identifies a stream: stateless clients pick ids
/// per request, so two live streams may well share one.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    sinks: Mutex<(u64, Vec<(u64, SubscriptionSink)>)>,
}

impl Listeners {
    /// Registers the sink of a newly opened listen stream.
    pub(crate) fn register(&self, sink: SubscriptionSink) {
        let mut guard = self.lock();
        let (next, sinks) = &mut *guard;
        *next += 1;
        sinks.push((*next, sink));
    }

    /// Notifies every open stream that accepted `change`.
    ///
    /// Each sink enforces the filter its client asked for, so a stream that did not
    /// subscribe to this kind of change refuses it and is simply skipped; a stream
    /// that has ended refuses everything and is dropped from the list.
    pub(crate) async fn notify(&self, change: ListChange) {
        let sinks = self.lock().1.clone();
        let mut closed = Vec::new();
        for (serial, sink) in &sinks {
            let sent = match change {
                ListChange::Tools => sink.notify_tool_list_changed().await,
                ListChange::Prompts => sink.notify_prompt_list_changed().await,
            };
            match sent {
                Ok(()) | Err(SubscriptionSendError::NotificationNotAccepted(_)) => {}
                Err(error) => {
                    tracing::debug!(%error, "dropping a listen stream that no longer accepts notifications");
                    closed.push(*serial);
                }
            }
        }
        if !closed.is_empty() {
            self.lock().1.retain(|(serial, _)| !closed.contains(serial));
        }
    }

    /// Locks the list; a panic elsewhere while holding it leaves a list of sinks that
    /// is still consistent, so poisoning is ignored.
    #[allow(clippy::type_complexity)]
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Vec<(u64, SubscriptionSink)>)> {
        self.sinks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
