//! Native sessions belong to whoever opened them.
//!
//! rmcp keeps a native backend's sessions and knows nothing of berth's users, so this wrapper
//! around its service remembers who initialized each session (from the `Mcp-Session-Id` of the
//! answer) and lets only that identity use it. Another identity's session, and a session berth
//! never saw opened, get the same `404` as a session that ended, without reaching rmcp.
//!
//! Entries go when the session is deleted or rmcp answers `404` for it (it expired). Sessions
//! that expire and are never asked for again are swept out against rmcp's own table whenever
//! the map has doubled since the last sweep, so it stays within twice the live sessions.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tower::Service;

use crate::{
    body::{RequestBody, ResponseBody},
    extensions::{AuthenticatedUser, ParsedBody},
    jsonrpc::Message,
    mcp_headers::SESSION_HEADER,
    reply,
};

/// Fewest entries before a sweep is considered.
const FIRST_SWEEP: usize = 1024;

/// Who opened each session.
#[derive(Debug)]
struct Table {
    owners: HashMap<String, Option<Arc<str>>>,
    /// The size at which the next sweep runs.
    sweep_at: usize,
}

/// A native service whose sessions are bound to the identity that initialized them.
#[derive(Clone)]
pub(crate) struct OwnedSessions<S> {
    inner: S,
    table: Arc<Mutex<Table>>,
    manager: Arc<LocalSessionManager>,
}

impl<S> OwnedSessions<S> {
    /// Wraps `inner`, whose sessions `manager` holds.
    pub(crate) fn new(inner: S, manager: Arc<LocalSessionManager>) -> Self {
        let table = Table { owners: HashMap::new(), sweep_at: FIRST_SWEEP };
        Self { inner, table: Arc::new(Mutex::new(table)), manager }
    }
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The JSON-RPC id of the first message of a parsed POST body, for the `404`'s error object.
fn first_id<B>(request: &Request<B>) -> Option<bytes::Bytes> {
    request.extensions().get::<ParsedBody>()?.0.messages().first().and_then(Message::id_bytes)
}

impl<S> Service<Request<RequestBody>> for OwnedSessions<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let identity = request.extensions().get::<AuthenticatedUser>().map(|user| Arc::clone(&user.0));
        let session = request.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(id) = &session {
            let owner = lock(&self.table).owners.get(id).cloned();
            if owner.as_ref() != Some(&identity) {
                if owner.is_some() {
                    tracing::warn!(
                        session = id.as_str(),
                        user = identity.as_deref().unwrap_or("-"),
                        "refused another identity's session: answered as unknown"
                    );
                }
                let response = reply::unknown_session(first_id(&request));
                return Box::pin(async move { Ok(response) });
            }
        }
        let deleting = request.method() == Method::DELETE;
        let (table, manager) = (Arc::clone(&self.table), Arc::clone(&self.manager));
        // The clone that was made ready serves this request; the clone left behind is made
        // ready by the next `poll_ready`.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            match session {
                Some(id)
                    if response.status() == StatusCode::NOT_FOUND || (deleting && response.status().is_success()) =>
                {
                    lock(&table).owners.remove(&id);
                }
                Some(_) => {}
                None => {
                    let opened = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok());
                    if let Some(opened) = opened {
                        let sweep = {
                            let mut table = lock(&table);
                            table.owners.insert(opened.to_owned(), identity);
                            table.owners.len() >= table.sweep_at
                        };
                        if sweep {
                            sweep_ended(&table, &manager).await;
                        }
                    }
                }
            }
            Ok(response)
        })
    }
}

/// Forgets the sessions rmcp no longer has, and sets the next sweep at twice what is left.
async fn sweep_ended(table: &Mutex<Table>, manager: &LocalSessionManager) {
    let live: std::collections::HashSet<String> =
        manager.sessions.read().await.keys().map(|id| id.to_string()).collect();
    let mut table = lock(table);
    table.owners.retain(|id, _| live.contains(id));
    table.sweep_at = (table.owners.len() * 2).max(FIRST_SWEEP);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sweep_forgets_sessions_rmcp_no_longer_has() {
        let manager = Arc::new(LocalSessionManager::default());
        let table = Mutex::new(Table { owners: HashMap::new(), sweep_at: FIRST_SWEEP });
        let live = {
            use rmcp::transport::streamable_http_server::session::SessionManager;
            let (id, _transport) = manager.create_session().await.unwrap();
            id.to_string()
        };
        {
            let mut table = lock(&table);
            table.owners.insert(live.clone(), Some(Arc::from("alice")));
            for n in 0..FIRST_SWEEP * 3 {
                table.owners.insert(format!("ended-{n}"), Some(Arc::from("bob")));
            }
        }
        sweep_ended(&table, &manager).await;
        let table = lock(&table);
        assert_eq!(table.owners.keys().collect::<Vec<_>>(), [&live]);
        assert_eq!(table.sweep_at, FIRST_SWEEP, "the threshold never drops below FIRST_SWEEP");
    }
}
