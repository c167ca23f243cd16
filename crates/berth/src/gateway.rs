//! The gateway: a validated configuration turned into backends and a stack, ready to serve.

use std::{collections::HashSet, future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::{
    access::{Allow, Memberships, Principal},
    admin::{self, AdminParts},
    audit::AuditLog,
    auth::{Authenticator, Throttle, Users, tokens},
    backend::{Backend, BackendKind},
    config::{
        AuthSetting, BackendSpec, BasicAuthConfig, Config, ConfigError, ENV_PASSWORD, ENV_USERNAME, LaunchSpec, Source,
        TlsConfig, Validated, check_distinct,
    },
    forwarded::TrustedProxies,
    host::{BaseDomain, HostPattern, HostPolicy},
    mcp_params::ToolSchemas,
    metrics::{ADMIN_LISTENER, MCP_LISTENER, Metrics},
    native::{NativeOptions, NativeRegistry},
    observe::Observer,
    remote::{LegacySse, RemoteBackend},
    route::Routes,
    secret::Secret,
    server::{ServeOptions, serve},
    stack::{LiveStack, StackParts, build},
    stdio::{DockerHub, Launcher, Naming, StdioBackend},
    tls::Tls,
};

mod actions;
mod dynamic;
mod reload;

pub(crate) use actions::{Action, ActionError};
pub(crate) use dynamic::{ChangeError, Changed};
use reload::{Applied, reload_on_change, reload_on_sighup};
pub(crate) use reload::{ReloadError, Reloaded, Reloader, config_error_details, log_outcome as log_reload};

/// A gateway built from a [`Config`]: its backends, users and HTTP stack.
#[derive(Debug)]
pub struct Gateway {
    routes: Arc<Routes>,
    parts: StackParts,
    stack: LiveStack,
    options: ServeOptions,
    shutdown: CancellationToken,
    docker: Arc<ArcSwapOption<DockerHub>>,
    admin: Option<AdminPlan>,
    admin_listener: Option<TcpListener>,
    /// What SIGHUP, `POST /api/reload` and `server.watch_config` reload.
    reloader: Arc<Reloader>,
    /// Whether a change of the file reloads it.
    watch_config: bool,
}

/// The admin listener to serve: where, its stack's parts and its limits.
#[derive(Debug)]
struct AdminPlan {
    address: SocketAddr,
    parts: AdminParts,
    options: ServeOptions,
}

/// Reads the environment; a seam so tests can supply their own.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The authenticator `[auth]` asks for: nobody checked with `auth = "none"`, else HTTP Basic
/// over the users of the environment, the config and the users file.
fn authenticator(config: &Config, env: EnvLookup<'_>) -> Result<Authenticator, ConfigError> {
    match &config.auth {
        AuthSetting::None => Ok(Authenticator::None),
        AuthSetting::Basic(basic) => {
            let throttle = Throttle::new(&basic.throttle).map(Arc::new);
            let tokens = Arc::new(config.validated.tokens.clone());
            let users = users(basic, &config.source, env, !tokens.is_empty())?;
            Ok(Authenticator::basic(users, &basic.realm, throttle).with_tokens(tokens))
        }
    }
}

/// The users of `[auth]`: the one named by the environment, `[[auth.users]]` and the users
/// file; at least one unless there are tokens, since authentication without any credential
/// would refuse everybody.
fn users(
    basic: &BasicAuthConfig,
    source: &Source,
    env: EnvLookup<'_>,
    has_tokens: bool,
) -> Result<Arc<Users>, ConfigError> {
    let mut builder = Users::builder();
    match (env(ENV_USERNAME), env(ENV_PASSWORD)) {
        (Some(name), Some(password)) if !name.is_empty() && !password.is_empty() => {
            builder = builder.plain(&name, &Secret::new(password));
        }
        (None, None) => {}
        _ => {
            return Err(source.invalid(
                None,
                format!("{ENV_USERNAME}/{ENV_PASSWORD}"),
                "set both variables, non-empty, or neither",
            ));
        }
    }
    for user in &basic.users {
        let entry = user.get_ref();
        builder = match (&entry.password, &entry.password_hash) {
            (Some(password), _) => builder.plain(&entry.name, &password.0),
            (None, Some(hash)) => builder
                .bcrypt(&entry.name, &hash.0)
                .map_err(|error| source.invalid(Some(user.span()), "auth.users.password_hash", error.to_string()))?,
            (None, None) => builder,
        };
    }
    if let Some(file) = &basic.users_file {
        let path = PathBuf::from(&file.get_ref().0);
        builder = builder
            .htpasswd_file(&path)
            .map_err(|error| source.invalid(Some(file.span()), "auth.users_file", error.to_string()))?;
    }
    if builder.is_empty() && !has_tokens {
        return Err(source.invalid(
            None,
            "auth",
            format!(
                "no users: set {ENV_USERNAME} and {ENV_PASSWORD}, add [[auth.users]], auth.users_file or [[auth.tokens]], \
                 or write auth = \"none\" to serve without authentication"
            ),
        ));
    }
    Ok(Arc::new(builder.build(basic.cache_size)))
}

/// The shared Docker engine, only when some backend runs in a container, so that a gateway
/// without docker backends never needs `DOCKER_HOST`; with what names this berth's deployment
/// (`BERTH_INSTANCE_NAME`, the configuration file, the listen address).
fn docker_hub(config: &Config, env: EnvLookup<'_>) -> Result<Option<Arc<DockerHub>>, ConfigError> {
    let needs_docker = config
        .validated
        .backends
        .values()
        .any(|spec| matches!(spec, BackendSpec::Stdio(stdio) if stdio.launch.needs_docker()));
    if !needs_docker {
        return Ok(None);
    }
    let engine =
        berth_docker::Engine::new().map_err(|error| config.source.invalid(None, "DOCKER_HOST", error.to_string()))?;
    let naming =
        Naming::new(env("BERTH_INSTANCE_NAME"), config.source.path.as_deref(), config.server.listen.to_string());
    Ok(Some(DockerHub::new(engine, naming)))
}

/// What every backend is built with: the transport settings, the native services, the Docker
/// engine, the shutdown token and the metrics its instances count with.
pub(crate) struct BackendContext<'a> {
    config: &'a Config,
    registry: &'a NativeRegistry,
    docker: Option<&'a Arc<DockerHub>>,
    native: NativeOptions,
    shutdown: &'a CancellationToken,
    metrics: &'a Metrics,
}

impl<'a> BackendContext<'a> {
    /// The context of `config`'s backends.
    pub(crate) fn new(
        config: &'a Config,
        registry: &'a NativeRegistry,
        docker: Option<&'a Arc<DockerHub>>,
        shutdown: &'a CancellationToken,
        metrics: &'a Metrics,
    ) -> Self {
        let server = &config.server;
        let native = NativeOptions {
            max_body_bytes: server.max_body_bytes,
            sse_keep_alive: server.sse_keep_alive.0,
            shutdown: shutdown.clone(),
        };
        Self { config, registry, docker, native, shutdown, metrics }
    }
}

/// Every backend, built from its validated spec.
fn backends(context: &BackendContext<'_>) -> Result<Vec<Arc<Backend>>, ConfigError> {
    context
        .config
        .validated
        .backends
        .iter()
        .map(|(name, spec)| build_backend(context, name, spec).map(Arc::new))
        .collect()
}

/// One backend, built from its validated spec: a native service from the registry (an unknown
/// service is an error naming the backend's line), a stdio server with its launcher. Nothing
/// starts until [`Backend::start`].
pub(crate) fn build_backend(
    context: &BackendContext<'_>,
    name: &str,
    spec: &BackendSpec,
) -> Result<Backend, ConfigError> {
    let config = context.config;
    let spanned = &config.backends[name];
    // Created before the backend itself so that a kind that sees the backend's own
    // list_changed notifications (the stdio relay) can be handed it too.
    let tool_schemas = Arc::new(ToolSchemas::new(name));
    let kind = match spec {
        BackendSpec::Native { service } => {
            let built = context.registry.build(service, &context.native).ok_or_else(|| {
                let known: Vec<&str> = context.registry.names().collect();
                config.source.invalid(
                    Some(spanned.span()),
                    format!("backends.{name}.service"),
                    format!("no native service `{service}` (this binary has: {})", known.join(", ")),
                )
            })?;
            BackendKind::Native(built)
        }
        BackendSpec::Stdio(stdio) => {
            let stdio = Arc::new(stdio.as_ref().clone());
            let launcher = match &stdio.launch {
                LaunchSpec::Sse(http) => {
                    let connector = LegacySse::new(name, Arc::new(http.clone())).map_err(|message| {
                        config.source.invalid(Some(spanned.span()), format!("backends.{name}.ca_file"), message)
                    })?;
                    Arc::new(Launcher::sse(connector))
                }
                _ => Arc::new(Launcher::new(name, Arc::clone(&stdio), context.docker.cloned())),
            };
            BackendKind::Stdio(Arc::new(StdioBackend::new(
                name,
                stdio,
                launcher,
                config.server.sse_keep_alive.0,
                context.shutdown,
                Some(tools_changed(&tool_schemas)),
                context.metrics.stdio_stats(name),
            )))
        }
        BackendSpec::Http(http) => {
            let remote =
                RemoteBackend::new(name, Arc::new(http.as_ref().clone()), context.shutdown).map_err(|message| {
                    config.source.invalid(Some(spanned.span()), format!("backends.{name}.ca_file"), message)
                })?;
            BackendKind::Http(Arc::new(remote))
        }
    };
    Ok(Backend::new(name, spanned.get_ref().required, kind, tool_schemas)
        .with_access(config.validated.access.get(name).cloned().unwrap_or_default()))
}

/// What a stdio backend calls when its server says its tool list changed: the tool schemas
/// berth learnt for `Mcp-Param-*` validation are stale.
fn tools_changed(schemas: &Arc<ToolSchemas>) -> Arc<dyn Fn() + Send + Sync> {
    let schemas = Arc::clone(schemas);
    Arc::new(move || schemas.invalidate())
}

/// The `Host` and `Origin` allow-lists: the public hosts, the base domain and every name below
/// it, and the allowed origins.
fn host_policy(validated: &Validated, authenticator: &Authenticator) -> HostPolicy {
    let mut hosts: Vec<HostPattern> = validated
        .public_hosts
        .iter()
        .cloned()
        .chain(validated.base_domain.iter().flat_map(BaseDomain::host_patterns))
        .collect();
    if hosts.is_empty() && matches!(authenticator, Authenticator::None) {
        // Without credentials, only the Host check stands between a browser on a rebound
        // DNS name and the backends, so an open gateway with no public hosts answers
        // loopback names only (`cli.rs` says so once, with the warning about auth = "none").
        hosts.push(HostPattern::localhost());
    }
    HostPolicy::new(hosts, validated.allowed_origins.clone())
}

/// What the server needs besides the stack: limits, timeouts and TLS (`tls`, named `field` in
/// errors), whose certificate and key are loaded now (relative to the config file) so that a
/// bad one stops the start.
fn serve_options(config: &Config, tls: Option<&TlsConfig>, field: &str) -> Result<ServeOptions, ConfigError> {
    let server = &config.server;
    let tls = match tls {
        None => None,
        Some(tls) => {
            let base = config.source.path.as_deref().and_then(std::path::Path::parent);
            let loaded = Tls::load(tls, base)
                .map_err(|error| config.source.invalid(Some(tls.cert.span()), field, error.to_string()))?;
            Some(Arc::new(loaded))
        }
    };
    Ok(ServeOptions {
        max_connections: server.max_connections,
        header_read_timeout: server.header_read_timeout.0,
        body_read_timeout: server.body_read_timeout.0,
        connection_idle_timeout: server.connection_idle_timeout.0,
        http2_keep_alive_interval: server.http2_keep_alive_interval.0,
        shutdown_grace: server.shutdown_grace.0,
        tls,
    })
}

/// The groups of every user, from `[[auth.users]] groups` and `[auth.groups]`. Every member
/// must be a user of some source, and every `user:` and `group:` a backend's `allow` names must
/// exist: a typo would lock the intended people out, or (for a group) silently admit nobody.
fn memberships(config: &Config, authenticator: &Authenticator) -> Result<Memberships, ConfigError> {
    let source = &config.source;
    let mut memberships = Memberships::default();
    let (AuthSetting::Basic(basic), Some(users)) = (&config.auth, authenticator.users()) else {
        return Ok(memberships);
    };
    for user in &basic.users {
        for group in &user.get_ref().groups {
            memberships.add(&user.get_ref().name, group);
        }
    }
    for token in &basic.tokens {
        for group in &token.get_ref().groups {
            memberships.add(&tokens::identity(&token.get_ref().name), group);
        }
    }
    for (group, members) in &basic.groups {
        for member in members.get_ref() {
            if !users.contains(member) {
                return Err(source.invalid(
                    Some(members.span()),
                    format!("auth.groups.{group}"),
                    format!("no user `{member}` (users come from {ENV_USERNAME}, [[auth.users]] and auth.users_file)"),
                ));
            }
            memberships.add(member, group);
        }
    }
    for (name, spec) in &config.validated.access {
        let span = Some(config.backends[name].span());
        for principal in spec.allow.iter().flat_map(Allow::principals) {
            let unknown = match principal {
                Principal::User(user) => (!users.contains(user)).then(|| format!("no user `{user}`")),
                Principal::Token(token) => (!config.validated.tokens.contains(token))
                    .then(|| format!("no token `{token}` (tokens come from [[auth.tokens]])")),
                Principal::Group(group) => (!memberships.has_group(group))
                    .then(|| format!("no group `{group}` (groups come from [[auth.users]] groups and [auth.groups])")),
            };
            if let Some(message) = unknown {
                return Err(source.invalid(span, format!("backends.{name}.allow"), message));
            }
        }
        for group in spec.visibility.iter().flat_map(|visibility| visibility.groups.keys()) {
            if !memberships.has_group(group) {
                let message = format!("no group `{group}` (groups come from [[auth.users]] groups and [auth.groups])");
                return Err(source.invalid(span, format!("backends.{name}.access.{group}"), message));
            }
        }
    }
    Ok(memberships)
}

/// The admin users: `[[auth.users]]` marked `admin = true` and the names of `admin.users`,
/// each of which must be a user of some source.
fn admin_users(config: &Config, authenticator: &Authenticator) -> Result<Arc<Users>, ConfigError> {
    let source = &config.source;
    let (AuthSetting::Basic(basic), Some(users)) = (&config.auth, authenticator.users()) else {
        return Err(source.invalid(
            config.admin.listen.as_ref().map(|l| l.span()),
            "admin.listen",
            "the admin listener needs admin users, and auth = \"none\" has no users",
        ));
    };
    let mut names: HashSet<String> =
        basic.users.iter().filter(|u| u.get_ref().admin).map(|u| u.get_ref().name.clone()).collect();
    for name in &config.admin.users {
        if !users.contains(name.get_ref()) {
            return Err(source.invalid(
                Some(name.span()),
                "admin.users",
                format!(
                    "no user `{}` (users come from {ENV_USERNAME}, [[auth.users]] and auth.users_file)",
                    name.get_ref()
                ),
            ));
        }
        names.insert(name.get_ref().clone());
    }
    if names.is_empty() {
        return Err(source.invalid(
            config.admin.listen.as_ref().map(|l| l.span()),
            "admin.listen",
            "no admin users: mark a [[auth.users]] entry `admin = true` or name users in admin.users",
        ));
    }
    Ok(Arc::new(users.restricted_to(&names)))
}

/// The admin listener's plan, when `admin.listen` is set.
fn admin_plan(
    config: &Config,
    authenticator: &Authenticator,
    routes: &Arc<Routes>,
    observer: &Observer,
    trusted_proxies: &Arc<TrustedProxies>,
) -> Result<Option<AdminPlan>, ConfigError> {
    let Some(address) = config.validated.admin_listen else { return Ok(None) };
    // Checked again here: --listen may have moved the MCP listener onto the admin port.
    let span = config.admin.listen.as_ref().map(|l| l.span());
    check_distinct(address, config.server.listen)
        .map_err(|message| config.source.invalid(span.clone(), "admin.listen", message))?;
    let realm = match &config.auth {
        AuthSetting::Basic(basic) => basic.realm.as_str(),
        AuthSetting::None => "berth",
    };
    let observer_report: Arc<dyn crate::auth::LoginReport> = Arc::new(observer.clone());
    // The same throttle as the MCP port: a guess is a guess on whichever listener it is made.
    let throttle = authenticator.throttle().cloned();
    let authenticator = Authenticator::basic(admin_users(config, authenticator)?, realm, throttle)
        .reporting(ADMIN_LISTENER, observer_report);
    let options = serve_options(config, config.admin.tls.as_ref(), "admin.tls")?;
    let parts = AdminParts {
        routes: Arc::clone(routes),
        authenticator,
        observer: observer.clone(),
        metrics_auth: config.admin.metrics_auth,
        trusted_proxies: Arc::clone(trusted_proxies),
        reloader: None,
    };
    Ok(Some(AdminPlan { address, parts, options }))
}

/// Reopens the audit file at each SIGUSR1 (logrotate's `postrotate`), until `stop`.
fn reopen_on_sigusr1(audit: Arc<AuditLog>, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut signals) = signal(SignalKind::user_defined1()) else {
        tracing::warn!("cannot listen for SIGUSR1: the audit file will not be reopened on it");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                received = signals.recv() => {
                    if received.is_none() {
                        return;
                    }
                    tracing::info!("SIGUSR1: reopening the audit log");
                    audit.reopen();
                }
                () = stop.cancelled() => return,
            }
        }
    });
}

impl Gateway {
    /// Builds the gateway, reading users from the process environment.
    pub fn build(config: &Config, registry: &NativeRegistry) -> Result<Self, ConfigError> {
        Self::build_with_env(config, registry, &|name| std::env::var(name).ok())
    }

    /// Builds the gateway with an explicit environment.
    pub fn build_with_env(config: &Config, registry: &NativeRegistry, env: EnvLookup<'_>) -> Result<Self, ConfigError> {
        let shutdown = CancellationToken::new();
        let mut metrics = Metrics::new();
        let authenticator = authenticator(config, env)?;
        let memberships = Arc::new(ArcSwap::from_pointee(memberships(config, &authenticator)?));
        let docker = docker_hub(config, env)?;
        let backends = backends(&BackendContext::new(config, registry, docker.as_ref(), &shutdown, &metrics))?;
        let host_policy = host_policy(&config.validated, &authenticator);
        let options = serve_options(config, config.server.tls.as_ref(), "server.tls")?;
        let routes = Arc::new(Routes::new(backends, config.validated.base_domain.clone()));
        metrics.register_backends(Arc::clone(&routes));
        let metrics = Arc::new(metrics);
        let audit = config.validated.audit.as_ref().map(|spec| AuditLog::start(spec, metrics.audit_dropped()));
        let observer = Observer::new(metrics, audit);
        let trusted_proxies = Arc::new(TrustedProxies::new(config.validated.trusted_proxies.clone()));
        let mut admin = admin_plan(config, &authenticator, &routes, &observer, &trusted_proxies)?;
        // Nothing reads metrics without an admin listener, nor audit lines without a log.
        let observe = admin.is_some() || observer.audit().is_some();
        let authenticator = if observe {
            let report: Arc<dyn crate::auth::LoginReport> = Arc::new(observer.clone());
            authenticator.reporting(MCP_LISTENER, report)
        } else {
            authenticator
        };
        let parts = StackParts {
            routes: Arc::clone(&routes),
            authenticator,
            host_policy: Arc::new(host_policy),
            max_body_bytes: config.server.max_body_bytes,
            tls: config.server.tls.is_some(),
            trusted_proxies,
            allow_ips: config.validated.allow_ips.clone().map(Arc::new),
            memberships,
            observer,
            observe,
        };
        let stack = LiveStack::new(build(parts.clone()));
        let docker = Arc::new(ArcSwapOption::new(docker));
        let reloader = Arc::new(Reloader {
            path: config.source.path.clone(),
            registry: registry.clone(),
            mcp: parts.authenticator.clone(),
            admin: admin.as_ref().map(|plan| plan.parts.authenticator.clone()),
            memberships: Arc::clone(&parts.memberships),
            routes: Arc::clone(&routes),
            stack: stack.clone(),
            parts: std::sync::Mutex::new(parts.clone()),
            docker: Arc::clone(&docker),
            shutdown: shutdown.clone(),
            metrics: Arc::clone(parts.observer.metrics()),
            applied: std::sync::Mutex::new(Applied::of(config)),
            serial: tokio::sync::Mutex::new(()),
            state_lock: tokio::sync::Mutex::new(()),
            retiring: tokio_util::task::TaskTracker::new(),
        });
        if let Some(plan) = &mut admin {
            plan.parts.reloader = Some(Arc::clone(&reloader));
        }
        let watch_config = config.server.watch_config;
        Ok(Self {
            routes,
            parts,
            stack,
            options,
            shutdown,
            docker,
            admin,
            admin_listener: None,
            reloader,
            watch_config,
        })
    }

    /// Starts each backend's shared instance once, waits for its handshake and stops it:
    /// for each, its name and the capabilities its server declares that keep per-user state,
    /// or why it did not start (`berth check --probe`).
    pub async fn probe_shared(&self) -> Vec<(String, Result<Vec<String>, String>)> {
        if let Some(docker) = self.docker.load_full() {
            docker.start(self.shutdown.clone()).await;
        }
        let mut found = Vec::new();
        for backend in self.routes.backends() {
            if let Some(outcome) = backend.probe_shared().await {
                found.push((backend.name().to_string(), outcome));
            }
        }
        found.sort();
        self.shutdown.cancel();
        found
    }

    /// Whether requests are served without authentication.
    pub fn is_open(&self) -> bool {
        matches!(self.parts.authenticator, Authenticator::None)
    }

    /// The names of the backends.
    pub fn backend_names(&self) -> Vec<String> {
        self.routes.backends().iter().map(|b| b.name().to_string()).collect()
    }

    /// The address `admin.listen` asks for, when the admin listener is configured: the caller
    /// binds it and hands it over with [`Gateway::with_admin_listener`].
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|admin| admin.address)
    }

    /// Serves the admin listener on `listener` too (bound to [`Gateway::admin_address`]).
    pub fn with_admin_listener(mut self, listener: TcpListener) -> Self {
        self.admin_listener = Some(listener);
        self
    }

    /// Serves on `listener` (and the admin listener, if one was handed over) until `shutdown`
    /// completes, then drains and stops every backend.
    pub async fn serve(mut self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        if let Some(docker) = self.docker.load_full() {
            docker.start(self.shutdown.clone()).await;
        }
        for backend in self.routes.backends() {
            backend.start();
        }
        let stop = CancellationToken::new();
        if let Some(audit) = self.parts.observer.audit().filter(|audit| audit.is_file()) {
            reopen_on_sigusr1(Arc::clone(audit), stop.clone());
        }
        reload_on_sighup(Arc::clone(&self.reloader), stop.clone());
        if self.watch_config {
            reload_on_change(Arc::clone(&self.reloader), stop.clone());
        }
        let admin = match (self.admin.take(), self.admin_listener.take()) {
            (Some(plan), Some(listener)) => Some((plan, listener)),
            (Some(plan), None) => {
                tracing::warn!(address = %plan.address, "the admin listener was configured but not bound; not serving it");
                None
            }
            (None, _) => None,
        };
        let main = serve(listener, self.stack.clone(), self.options.clone(), self.shutdown.clone(), async {
            shutdown.await;
            stop.cancel();
        });
        let admin = async {
            if let Some((plan, listener)) = admin {
                let stack = admin::build(plan.parts);
                serve(listener, stack, plan.options, CancellationToken::new(), stop.cancelled()).await;
            }
        };
        futures::future::join(main, admin).await;
        // Every backend stops at once: each may wait out its servers' grace periods. A reload
        // cannot start one meanwhile: the reloads are over (SIGHUP and the watch stopped with
        // the listeners), and the lock is taken so that one still running finishes first.
        let _no_more_reloads = self.reloader.serial.lock().await;
        let backends = self.routes.backends();
        futures::future::join_all(backends.iter().map(|backend| backend.shutdown())).await;
        self.reloader.retiring.close();
        self.reloader.retiring.wait().await;
        if let Some(docker) = self.docker.load_full() {
            docker.finish().await;
        }
        self.shutdown.cancel();
        if let Some(audit) = self.parts.observer.audit().cloned() {
            let _ = tokio::task::spawn_blocking(move || audit.flush(Duration::from_secs(2))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    fn build(text: &str, pairs: &[(&str, &str)]) -> Result<Gateway, String> {
        let config = Config::parse(text, Some(Path::new("berth.toml"))).map_err(|e| e.to_string())?;
        Gateway::build_with_env(&config, &NativeRegistry::builtin(), &env(pairs)).map_err(|e| e.to_string())
    }

    #[test]
    fn users_are_required_unless_auth_is_none() {
        let backends = "[backends.conformance]\nkind = \"native\"\n";
        let error = build(backends, &[]).unwrap_err();
        assert!(error.contains("no users"), "{error}");
        let open = build(&format!("auth = \"none\"\n{backends}"), &[]).unwrap();
        assert!(open.is_open());
        let from_env = build(backends, &[(ENV_USERNAME, "a"), (ENV_PASSWORD, "b")]).unwrap();
        assert!(!from_env.is_open());
        let half = build(backends, &[(ENV_USERNAME, "a")]).unwrap_err();
        assert!(half.contains(ENV_PASSWORD), "{half}");
    }

    #[test]
    fn unknown_native_services_name_the_line() {
        let error =
            build("\n[backends.fs]\nkind = \"native\"\n", &[(ENV_USERNAME, "a"), (ENV_PASSWORD, "b")]).unwrap_err();
        assert!(error.starts_with("berth.toml:2: `backends.fs.service`"), "{error}");
        assert!(error.contains("conformance"), "{error}");
    }

    #[test]
    fn the_host_policy_comes_from_the_validated_values() {
        let users = [(ENV_USERNAME, "a"), (ENV_PASSWORD, "b")];
        let listed = "[server]\npublic_hosts = [\"a.example.com\"]\nbase_domain = \"MCP.example.com\"\n";
        let open = "auth = \"none\"\n";
        let table = [
            (listed, "a.example.com", true),
            (listed, "mcp.example.com", true),
            (listed, "fs.mcp.example.com", true),
            (listed, "b.example.com", false),
            // An open gateway without public hosts answers loopback names only.
            (open, "localhost", true),
            (open, "example.com", false),
        ];
        for (text, host, allowed) in table {
            let gateway = build(text, &users).unwrap();
            let checked = gateway.parts.host_policy.check(Some(host), &http::HeaderMap::new());
            assert_eq!(checked.is_ok(), allowed, "{text:?} {host}");
        }
    }

    #[test]
    fn a_missing_users_file_is_reported() {
        let error = build("[auth]\nusers_file = \"/nonexistent/htpasswd\"\n", &[]).unwrap_err();
        assert!(error.starts_with("berth.toml:2: `auth.users_file`"), "{error}");
    }

    #[test]
    fn allow_lists_and_groups_must_name_what_exists() {
        let users = "[[auth.users]]\nname = \"alice\"\npassword = \"pw\"\ngroups = [\"dev\"]\n\n";
        let env_user = [(ENV_USERNAME, "erin"), (ENV_PASSWORD, "pw")];
        let backend =
            |allow: &str| format!("{users}[backends.fs]\nkind = \"native\"\nservice = \"conformance\"\n{allow}\n");
        let table: &[(String, Option<&str>)] = &[
            (backend("allow = [\"group:dev\", \"user:erin\"]"), None),
            (backend("allow = [\"group:ops\"]"), Some("berth.toml:6: `backends.fs.allow`: no group `ops`")),
            (backend("allow = [\"user:zed\"]"), Some("`backends.fs.allow`: no user `zed`")),
            (backend("allow = []"), Some("`backends.fs.allow`: an empty list admits nobody")),
            (backend("allow = [\"token:ci\"]"), Some("no token `ci`")),
            (backend("allow = [\"dev\"]"), Some("is not `user:<name>`, `group:<name>` or `token:<name>`")),
            (format!("[auth.groups]\nops = [\"erin\"]\n\n{}", backend("allow = [\"group:ops\"]")), None),
            (backend("tools = { allow = [\"[\"] }"), Some("`backends.fs.tools`: `[`")),
            (backend("tools = { deny = [\"x\"] }\n[backends.fs.access.dev]\ntools = {}"), None),
            (
                backend("[backends.fs.access.ops]\nprompts = { deny = [\"*\"] }"),
                Some("`backends.fs.access.ops`: no group `ops`"),
            ),
            (
                format!("[auth.groups]\nops = [\"zed\"]\n\n{}", backend("")),
                Some("berth.toml:2: `auth.groups.ops`: no user `zed`"),
            ),
            (
                "auth = \"none\"\n[backends.fs]\nkind = \"native\"\nservice = \"conformance\"\nallow = [\"user:a\"]\n"
                    .into(),
                Some("auth = \"none\" has no identities to allow"),
            ),
        ];
        for (text, expected) in table {
            match (build(text, &env_user), expected) {
                (Ok(_), None) => {}
                (Err(error), Some(expected)) => assert!(error.contains(expected), "{text}\n{error}"),
                (Ok(_), Some(expected)) => panic!("{text}\nbuilt, expected `{expected}`"),
                (Err(error), None) => panic!("{text}\n{error}"),
            }
        }
    }
}
