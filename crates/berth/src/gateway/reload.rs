//! Live reconfiguration: read the configuration again and apply the difference.
//!
//! SIGHUP, `POST /api/reload` and (with `server.watch_config`) a change of the file all come
//! here. berth reads and validates the new configuration and builds everything it is made of
//! exactly as at start-up (users of every source, tokens, groups, admin users, the backends that
//! are new or changed, the host policy), so that nothing is swapped in before all of it is
//! valid; then it applies it at once:
//!
//! - users, tokens and groups are replaced in the authenticators (password rotation without a
//!   restart); requests in flight keep the identity they were given;
//! - the MCP stack is rebuilt from the new hosts, origins, limits and allow-lists and swapped
//!   in: the next request runs through it, and no connection is closed;
//! - backends whose spec is unchanged keep running, with their sessions (only their access
//!   rules are taken from the new file); new ones start; removed and changed ones are taken out
//!   of the routing table, drain the requests they have in flight and stop (their sessions then
//!   get 404, as the spec says; a changed one is started anew under the same name).
//!
//! What cannot change while berth serves (listeners, TLS, connection limits, the audit log) is
//! refused as a whole, with the fields that need a restart. Reloads are serialized.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{BackendContext, admin_users, authenticator, build_backend, docker_hub, host_policy, memberships};
use crate::{
    access::Memberships,
    auth::Authenticator,
    backend::Backend,
    config::{BackendSpec, Config, ConfigError},
    metrics::Metrics,
    route::Routes,
    stack::{LiveStack, StackParts, build},
    stdio::DockerHub,
};

/// Everything a reload reads and replaces.
#[derive(Debug)]
pub(crate) struct Reloader {
    /// The configuration file; `None` for the built-in configuration.
    pub(crate) path: Option<PathBuf>,
    /// The native services of this binary (for the built-in configuration and native backends).
    pub(crate) registry: crate::native::NativeRegistry,
    /// The MCP port's authenticator (its clones share the users and tokens it replaces).
    pub(crate) mcp: Authenticator,
    /// The admin listener's, when there is one.
    pub(crate) admin: Option<Authenticator>,
    /// The groups the `allow` lists are checked against.
    pub(crate) memberships: Arc<ArcSwap<Memberships>>,
    /// The routing table.
    pub(crate) routes: Arc<Routes>,
    /// The MCP listener's stack, and the parts it was last built from.
    pub(crate) stack: LiveStack,
    pub(crate) parts: Mutex<StackParts>,
    /// The Docker engine, created by the first reload that adds a docker backend if start-up
    /// had none.
    pub(crate) docker: Arc<ArcSwapOption<DockerHub>>,
    /// Cancelled when berth stops: native services and stdio streams end with it.
    pub(crate) shutdown: CancellationToken,
    /// Where stdio backends count their messages and restarts.
    pub(crate) metrics: Arc<Metrics>,
    /// What the running configuration is, to diff the next one against.
    pub(crate) applied: Mutex<Applied>,
    /// One reload at a time.
    pub(crate) serial: tokio::sync::Mutex<()>,
    /// One change of the state file at a time (`PUT`/`DELETE /api/backends/{name}`).
    pub(crate) state_lock: tokio::sync::Mutex<()>,
    /// The backends a reload took out of service, draining and stopping: berth's shutdown
    /// waits for them, so that none of their processes or containers outlives it.
    pub(crate) retiring: TaskTracker,
}

/// What the configuration in use says, as far as a reload compares it.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    /// Each backend's spec and `required`.
    pub(crate) backends: BTreeMap<String, (BackendSpec, bool)>,
    /// The settings a reload cannot change, as text to compare.
    pub(crate) fixed: Vec<(&'static str, String)>,
    /// The server settings every backend is built with: when they change, every backend
    /// restarts.
    pub(crate) shared: String,
    /// The configuration itself, for `GET /api/config`.
    pub(crate) config: Arc<Config>,
}

impl Applied {
    /// What `config` says.
    pub(crate) fn of(config: &Config) -> Self {
        let backends = config
            .validated
            .backends
            .iter()
            .map(|(name, spec)| (name.clone(), (spec.clone(), config.backends[name].get_ref().required)))
            .collect();
        Self {
            backends,
            fixed: fixed_settings(config),
            shared: shared_settings(config),
            config: Arc::new(config.clone()),
        }
    }
}

/// The server settings backends are built with (native services and stdio relays).
fn shared_settings(config: &Config) -> String {
    format!("{:?} {}", config.server.sse_keep_alive.0, config.server.max_body_bytes)
}

/// The settings that need a restart, as `(field, value)`: the listeners and their TLS, the
/// connection limits the accept loop was started with, and the audit log's destination.
fn fixed_settings(config: &Config) -> Vec<(&'static str, String)> {
    let server = &config.server;
    vec![
        ("server.listen", server.listen.to_string()),
        ("server.tls", format!("{:?}", server.tls)),
        ("server.max_connections", server.max_connections.to_string()),
        ("server.header_read_timeout", format!("{:?}", server.header_read_timeout.0)),
        ("server.body_read_timeout", format!("{:?}", server.body_read_timeout.0)),
        ("server.connection_idle_timeout", format!("{:?}", server.connection_idle_timeout.0)),
        ("server.http2_keep_alive_interval", format!("{:?}", server.http2_keep_alive_interval.0)),
        ("admin.listen", format!("{:?}", config.validated.admin_listen)),
        ("admin.tls", format!("{:?}", config.admin.tls)),
        ("admin.metrics_auth", config.admin.metrics_auth.to_string()),
        ("audit", format!("{:?}", config.validated.audit)),
        (
            "auth.throttle",
            match &config.auth {
                crate::config::AuthSetting::Basic(basic) => format!("{:?}", basic.throttle),
                crate::config::AuthSetting::None => String::new(),
            },
        ),
        ("auth", if matches!(config.auth, crate::config::AuthSetting::None) { "none" } else { "basic" }.to_string()),
    ]
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The new configuration is not valid.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// It changes what only a restart can.
    #[error("{path}: {} changed: a restart is needed to apply {}", fields.join(", "), if fields.len() == 1 { "it" } else { "them" })]
    RestartNeeded {
        /// The file.
        path: String,
        /// The fields that changed.
        fields: Vec<&'static str>,
    },
}

impl ReloadError {
    /// The slug of the admin API's error answer.
    pub(crate) fn slug(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_config",
            Self::RestartNeeded { .. } => "restart_needed",
        }
    }

    /// The error as JSON: the message, and the file, line and field where they are known.
    pub(crate) fn details(&self) -> serde_json::Value {
        match self {
            Self::Invalid(error) => config_error_details(error),
            Self::RestartNeeded { path, fields } => serde_json::json!({
                "error": self.slug(), "message": self.to_string(), "file": path, "fields": fields,
            }),
        }
    }
}

/// A configuration error as JSON (`invalid_config`): the message, and the file, line, field or
/// column where they are known.
pub(crate) fn config_error_details(error: &ConfigError) -> serde_json::Value {
    let mut details = serde_json::Map::new();
    details.insert("error".into(), "invalid_config".into());
    details.insert("message".into(), error.to_string().into());
    match error {
        ConfigError::Invalid { path, line, field, .. } => {
            details.insert("file".into(), path.display().to_string().into());
            details.insert("line".into(), (*line).into());
            details.insert("field".into(), field.clone().into());
        }
        ConfigError::Parse { path, line, column, .. } => {
            details.insert("file".into(), path.display().to_string().into());
            details.insert("line".into(), (*line).into());
            details.insert("column".into(), (*column).into());
        }
        ConfigError::Io { path, .. } => {
            details.insert("file".into(), path.display().to_string().into());
        }
    }
    serde_json::Value::Object(details)
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Reloaded {
    /// Backends that were not there and started.
    pub(crate) added: Vec<String>,
    /// Backends whose spec changed: drained, stopped and started anew.
    pub(crate) restarted: Vec<String>,
    /// Backends that are gone: drained and stopped.
    pub(crate) removed: Vec<String>,
    /// Backends left running, sessions and all.
    pub(crate) unchanged: Vec<String>,
    /// Users of every source.
    pub(crate) users: usize,
    /// API tokens.
    pub(crate) tokens: usize,
}

/// A backend of the new configuration: the running one under new rules, or a new one.
enum Next {
    Kept(Arc<Backend>),
    Started(Arc<Backend>),
}

impl Reloader {
    /// The configuration in use.
    pub(crate) fn config(&self) -> Arc<Config> {
        Arc::clone(&self.lock_applied().config)
    }

    fn lock_applied(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the configuration again and applies the difference, or says why not (and changes
    /// nothing). Counted in `berth_config_reloads_total`.
    pub(crate) async fn reload(&self, env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Result<Reloaded, ReloadError> {
        let _serial = self.serial.lock().await;
        let outcome = self.apply(env).await;
        self.metrics.config_reload(if outcome.is_ok() { "ok" } else { "error" });
        outcome
    }

    fn read(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::load(path)?,
            None => Config::builtin(self.registry.names().map(str::to_owned))?,
        };
        if let Some(listen) = self.lock_applied().config.listen_override {
            config.override_listen(listen);
        }
        Ok(config)
    }

    async fn apply(&self, env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Result<Reloaded, ReloadError> {
        let config = self.read()?;
        let applied = self.lock_applied().clone();
        let fields: Vec<&'static str> = fixed_settings(&config)
            .into_iter()
            .zip(&applied.fixed)
            .filter(|(new, old)| new != *old)
            .map(|(new, _)| new.0)
            .collect();
        if !fields.is_empty() {
            return Err(ReloadError::RestartNeeded {
                path: config.source.display_path().display().to_string(),
                fields,
            });
        }
        // Everything is built before anything is swapped in.
        let fresh = authenticator(&config, env)?;
        let groups = memberships(&config, &fresh)?;
        let admins = match &self.admin {
            Some(_) => Some(admin_users(&config, &fresh)?),
            None => None,
        };
        let (docker, new_hub) = match self.docker.load_full() {
            Some(hub) => (Some(hub), false),
            None => match docker_hub(&config, env)? {
                Some(hub) => (Some(hub), true),
                None => (None, false),
            },
        };
        let context = BackendContext::new(&config, &self.registry, docker.as_ref(), &self.shutdown, &self.metrics);
        let same_shared = shared_settings(&config) == applied.shared;
        let mut next = Vec::new();
        let mut report = Reloaded::default();
        for (name, spec) in &config.validated.backends {
            let required = config.backends[name].get_ref().required;
            let access = config.validated.access.get(name).cloned().unwrap_or_default();
            let running = self.routes.get(name);
            match (running, applied.backends.get(name)) {
                (Some(running), Some((old, _))) if old == spec && same_shared => {
                    next.push(Next::Kept(Arc::new(running.with_new_access(required, access))));
                    report.unchanged.push(name.clone());
                }
                (running, _) => {
                    // A backend an admin stopped stays stopped under its new table.
                    let built = build_backend(&context, name, spec)?;
                    let stopped = running.as_ref().is_some_and(|running| running.is_stopped());
                    next.push(Next::Started(Arc::new(if stopped { built.into_stopped() } else { built })));
                    if running.is_some() { &mut report.restarted } else { &mut report.added }.push(name.clone());
                }
            }
        }
        let kept: BTreeSet<&str> = report.unchanged.iter().map(String::as_str).collect();
        let retiring: Vec<Arc<Backend>> =
            self.routes.backends().into_iter().filter(|backend| !kept.contains(backend.name())).collect();
        report.removed = retiring
            .iter()
            .map(|backend| backend.name().to_string())
            .filter(|name| !config.validated.backends.contains_key(name))
            .collect();

        // Valid: apply it all.
        if let (Some(users), Some(tokens)) = (fresh.users(), fresh.tokens()) {
            report.users = users.len();
            report.tokens = tokens.len();
            self.mcp.replace(users, Some(tokens));
        }
        if let (Some(admin), Some(admins)) = (&self.admin, admins) {
            admin.replace(admins, None);
        }
        self.memberships.store(Arc::new(groups));
        if new_hub && let Some(hub) = &docker {
            self.docker.store(Some(Arc::clone(hub)));
            hub.start(self.shutdown.clone()).await;
        }
        let backends: Vec<Arc<Backend>> = next
            .iter()
            .map(|next| match next {
                Next::Kept(b) | Next::Started(b) => Arc::clone(b),
            })
            .collect();
        self.routes.replace(backends, config.validated.base_domain.clone());
        {
            let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            parts.host_policy = Arc::new(host_policy(&config.validated, &parts.authenticator));
            parts.max_body_bytes = config.server.max_body_bytes;
            parts.trusted_proxies =
                Arc::new(crate::forwarded::TrustedProxies::new(config.validated.trusted_proxies.clone()));
            parts.allow_ips = config.validated.allow_ips.clone().map(Arc::new);
            self.stack.replace(build(parts.clone()));
        }
        for next in &next {
            if let Next::Started(backend) = next {
                backend.start();
            }
        }
        let grace = config.server.shutdown_grace.0;
        for backend in retiring {
            self.retiring.spawn(async move { backend.retire(grace).await });
        }
        *self.lock_applied() = Applied::of(&config);
        Ok(report)
    }
}

/// Logs a reload's outcome, for each way one is asked for (`cause`).
pub(crate) fn log_outcome(cause: &str, outcome: &Result<Reloaded, ReloadError>) {
    match outcome {
        Ok(done) => tracing::info!(
            added = ?done.added,
            restarted = ?done.restarted,
            removed = ?done.removed,
            unchanged = done.unchanged.len(),
            users = done.users,
            tokens = done.tokens,
            "{cause}: configuration reloaded"
        ),
        Err(error) => tracing::error!("{cause}: kept the configuration in use: {error}"),
    }
}

/// Reloads at each SIGHUP, until `stop`.
pub(crate) fn reload_on_sighup(reloader: Arc<Reloader>, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut signals) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: the configuration will not be reloaded on it");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                signal = signals.recv() => {
                    if signal.is_none() {
                        return;
                    }
                    let env = |name: &str| std::env::var(name).ok();
                    log_outcome("SIGHUP", &reloader.reload(&env).await);
                }
            }
        }
    });
}

/// How often `server.watch_config` looks at the file.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// With `server.watch_config`, reloads when the file's content changes (compared by content,
/// so that editors that replace the file, and `touch`, are both handled right), until `stop`.
pub(crate) fn reload_on_change(reloader: Arc<Reloader>, stop: CancellationToken) {
    let Some(path) = reloader.path.clone() else { return };
    // The text the configuration in use was read from, not the file as it is when this task
    // first runs: an edit made in between is a change too.
    let mut seen = Some(reloader.config().file_text.clone().into_bytes());
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(WATCH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            // A file being rewritten may be read half-written: a reload then reports it invalid,
            // and the next tick, which sees the rest, reloads again.
            let now = tokio::fs::read(&path).await.ok();
            if now.is_none() || now == seen {
                continue;
            }
            seen = now;
            let env = |name: &str| std::env::var(name).ok();
            log_outcome("the configuration file changed", &reloader.reload(&env).await);
        }
    });
}
