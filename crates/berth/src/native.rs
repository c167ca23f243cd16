//! The registry of native services: rmcp `ServerHandler`s compiled into the binary and served
//! in-process.
//!
//! A service is registered under a name with a factory; `[backends.<name>] kind = "native"`
//! picks one by that name (or by `service = "..."`). Users add their own by building a binary
//! that registers them and calls [`crate::cli::run`] (see `examples/native-greeter`).

use std::{collections::BTreeMap, convert::Infallible, sync::Arc, time::Duration};

use http::{Request, Response};
use rmcp::{
    ServerHandler,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneSyncService;

use crate::body::{RequestBody, ResponseBody};

mod owners;

/// The HTTP service of one native backend.
pub(crate) type NativeService = BoxCloneSyncService<Request<RequestBody>, Response<ResponseBody>, Infallible>;

/// The transport settings a native service is built with.
#[derive(Debug, Clone)]
pub(crate) struct NativeOptions {
    /// Largest accepted POST body.
    pub(crate) max_body_bytes: usize,
    /// Interval of SSE keep-alive comments.
    pub(crate) sse_keep_alive: Duration,
    /// Cancelled at shutdown: ends every session and SSE stream of the service.
    pub(crate) shutdown: CancellationToken,
}

type Factory = Arc<dyn Fn(&NativeOptions) -> NativeService + Send + Sync>;

/// The native services a berth binary can serve, by name.
#[derive(Clone, Default)]
pub struct NativeRegistry {
    services: BTreeMap<String, Factory>,
}

impl std::fmt::Debug for NativeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.services.keys()).finish()
    }
}

impl NativeRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The services built into `berth`: `conformance`, the reference server of the official
    /// MCP conformance suite.
    pub fn builtin() -> Self {
        // One server, cloned per session: its clones share state that must outlive a single
        // request (sealed request state, subscriptions, open listen streams).
        let conformance = berth_conformance::ConformanceServer::new();
        Self::new().register("conformance", move || conformance.clone())
    }

    /// Registers `factory` under `name`; it is called once per MCP session (and per request of
    /// stateless clients), so it should be cheap and share expensive state through `Arc`s.
    pub fn register<S, F>(mut self, name: impl Into<String>, factory: F) -> Self
    where
        S: ServerHandler + Send + 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let factory = Arc::new(factory);
        let build: Factory = Arc::new(move |options: &NativeOptions| {
            let factory = Arc::clone(&factory);
            // berth validates Host and Origin itself (see host.rs): rmcp's loopback-only
            // default would reject every request that comes through a reverse proxy.
            let config = StreamableHttpServerConfig::default()
                .disable_allowed_hosts()
                .disable_allowed_origins()
                .with_max_request_body_bytes(options.max_body_bytes)
                .with_sse_keep_alive(Some(options.sse_keep_alive))
                .with_cancellation_token(options.shutdown.child_token());
            let manager = Arc::new(LocalSessionManager::default());
            let service = StreamableHttpService::new(move || Ok(factory()), Arc::clone(&manager), config);
            BoxCloneSyncService::new(owners::OwnedSessions::new(service, manager))
        });
        self.services.insert(name.into(), build);
        self
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// Builds the HTTP service of `name`, if it is registered.
    pub(crate) fn build(&self, name: &str, options: &NativeOptions) -> Option<NativeService> {
        self.services.get(name).map(|factory| factory(options))
    }
}
