//! An admin's actions on one backend: start, stop, restart.
//!
//! Each is a swap in the routing table, as a reload's: a fresh backend is built from the table
//! of the configuration in use (the start-up code, [`build_backend`]), takes the old one's place,
//! and the old one retires (drains its requests in flight, then stops its processes and
//! containers; its sessions get 404 afterwards). A stopped backend is such a fresh one that
//! starts nothing and refuses every request with `503 backend_stopped`; it stays stopped through
//! reloads until an admin starts it. Actions and reloads are serialized by one lock.

use std::sync::Arc;

use super::{BackendContext, Reloader, build_backend};
use crate::{backend::Backend, config::ConfigError};

/// What an admin can do to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    /// Start a stopped backend (a running one is left as it is).
    Start,
    /// Stop it: drain, then stop every instance; refuse requests until started.
    Stop,
    /// Stop it and start it anew (a stopped one just starts).
    Restart,
}

impl Action {
    /// The action a path segment names.
    pub(crate) fn parse(segment: &str) -> Option<Self> {
        match segment {
            "start" => Some(Self::Start),
            "stop" => Some(Self::Stop),
            "restart" => Some(Self::Restart),
            _ => None,
        }
    }
}

/// What an action did.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Acted {
    /// The backend.
    pub(crate) backend: String,
    /// The action asked for.
    pub(crate) action: Action,
    /// `running` or `stopped`, afterwards.
    pub(crate) state: &'static str,
    /// Whether anything changed (`start` of a running backend, `stop` of a stopped one: no).
    pub(crate) changed: bool,
}

/// Why an action did nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ActionError {
    /// No backend of that name.
    #[error("no backend `{0}`")]
    NotFound(String),
    /// The backend could not be built from the configuration in use (a native service this
    /// binary no longer has, say).
    #[error("{0}")]
    Build(#[from] ConfigError),
}

impl Reloader {
    /// Starts, stops or restarts backend `name`, answering once the instance it replaced has
    /// drained (up to `server.shutdown_grace`) and stopped.
    pub(crate) async fn act(&self, name: &str, action: Action) -> Result<Acted, ActionError> {
        let serial = self.serial.lock().await;
        let running = self.routes.get(name).ok_or_else(|| ActionError::NotFound(name.to_string()))?;
        let stop = action == Action::Stop;
        let unchanged = match action {
            Action::Start => !running.is_stopped(),
            Action::Stop => running.is_stopped(),
            Action::Restart => false,
        };
        if unchanged {
            let state = if running.is_stopped() { "stopped" } else { "running" };
            return Ok(Acted { backend: name.to_string(), action, state, changed: false });
        }
        let config = self.config();
        let spec = config.validated.backends.get(name).ok_or_else(|| ActionError::NotFound(name.to_string()))?;
        let docker = self.docker.load_full();
        let context = BackendContext::new(&config, &self.registry, docker.as_ref(), &self.shutdown, &self.metrics);
        let built = build_backend(&context, name, spec)?;
        let fresh: Arc<Backend> = Arc::new(if stop { built.into_stopped() } else { built });
        let backends: Vec<Arc<Backend>> = self
            .routes
            .backends()
            .into_iter()
            .map(|backend| if backend.name() == name { Arc::clone(&fresh) } else { backend })
            .collect();
        self.routes.replace(backends, config.validated.base_domain.clone());
        fresh.start();
        let grace = config.server.shutdown_grace.0;
        // The answer waits until the old one is gone (its processes and containers stopped),
        // without holding up reloads and other actions meanwhile; berth's shutdown waits for it
        // too, should the admin hang up.
        let retired = self.retiring.spawn(async move { running.retire(grace).await });
        drop(serial);
        let _ = retired.await;
        tracing::info!(backend = name, action = ?action, "admin action applied");
        let state = if stop { "stopped" } else { "running" };
        Ok(Acted { backend: name.to_string(), action, state, changed: true })
    }
}
