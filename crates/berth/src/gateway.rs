//! The gateway: a validated configuration turned into backends and a stack, ready to serve.

use std::{future::Future, path::PathBuf, sync::Arc};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{Authenticator, Users},
    backend::{Backend, BackendKind},
    config::{AuthSetting, BackendConfig, Config, ConfigError, ENV_PASSWORD, ENV_USERNAME},
    host::{HostPattern, HostPolicy, parse_origin},
    native::{NativeOptions, NativeRegistry},
    route::Routes,
    secret::Secret,
    server::{ServeOptions, serve},
    stack::{StackParts, build},
};

/// A gateway built from a [`Config`]: its backends, users and HTTP stack.
#[derive(Debug)]
pub struct Gateway {
    routes: Arc<Routes>,
    parts: StackParts,
    options: ServeOptions,
    shutdown: CancellationToken,
}

/// Reads the environment; a seam so tests can supply their own.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn users_from(config: &Config, env: EnvLookup<'_>) -> Result<Option<Arc<Users>>, ConfigError> {
    let source = &config.source;
    let basic = match &config.auth {
        AuthSetting::None => return Ok(None),
        AuthSetting::Basic(basic) => basic,
    };
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
    if builder.is_empty() {
        return Err(source.invalid(
            None,
            "auth",
            format!(
                "no users: set {ENV_USERNAME} and {ENV_PASSWORD}, add [[auth.users]] or auth.users_file, \
                 or write auth = \"none\" to serve without authentication"
            ),
        ));
    }
    Ok(Some(Arc::new(builder.build(basic.cache_size))))
}

impl Gateway {
    /// Builds the gateway, reading users from the process environment.
    pub fn build(config: &Config, registry: &NativeRegistry) -> Result<Self, ConfigError> {
        Self::build_with_env(config, registry, &|name| std::env::var(name).ok())
    }

    /// Builds the gateway with an explicit environment.
    pub fn build_with_env(
        config: &Config,
        registry: &NativeRegistry,
        env: EnvLookup<'_>,
    ) -> Result<Self, ConfigError> {
        let server = &config.server;
        let shutdown = CancellationToken::new();
        let authenticator = match (users_from(config, env)?, &config.auth) {
            (Some(users), AuthSetting::Basic(basic)) => Authenticator::basic(users, &basic.realm),
            _ => Authenticator::None,
        };
        let native = NativeOptions {
            max_body_bytes: server.max_body_bytes,
            sse_keep_alive: server.sse_keep_alive.0,
            shutdown: shutdown.clone(),
        };
        let mut backends = Vec::new();
        for (name, spanned) in &config.backends {
            let backend = match spanned.get_ref() {
                BackendConfig::Native(native_config) => {
                    let service_name = native_config.service.as_deref().unwrap_or(name);
                    let service = registry.build(service_name, &native).ok_or_else(|| {
                        let known: Vec<&str> = registry.names().collect();
                        config.source.invalid(
                            Some(spanned.span()),
                            format!("backends.{name}.service"),
                            format!("no native service `{service_name}` (this binary has: {})", known.join(", ")),
                        )
                    })?;
                    Backend::new(name, native_config.required, BackendKind::Native(service))
                }
            };
            backends.push(Arc::new(backend));
        }
        let mut hosts: Vec<HostPattern> = server
            .public_hosts
            .iter()
            .chain(server.base_domain.iter())
            .map(|host| HostPattern::parse(host.get_ref()).expect("validated with the config"))
            .chain(server.base_domain.iter().map(|domain| {
                HostPattern::parse(&format!("*.{}", domain.get_ref())).expect("validated with the config")
            }))
            .collect();
        if hosts.is_empty() && matches!(authenticator, Authenticator::None) {
            // Without credentials, only the Host check stands between a browser on a rebound
            // DNS name and the backends, so an open gateway with no public hosts answers
            // loopback names only.
            tracing::warn!("auth = \"none\" and no server.public_hosts: only localhost Host headers are accepted");
            hosts.push(HostPattern::parse("localhost").expect("a valid host name"));
        }
        let origins = server
            .allowed_origins
            .iter()
            .map(|origin| parse_origin(origin.get_ref()).expect("validated with the config"))
            .collect();
        let routes = Arc::new(Routes::new(backends, server.base_domain.as_ref().map(|d| d.get_ref().clone())));
        let parts = StackParts {
            routes: Arc::clone(&routes),
            authenticator,
            host_policy: Arc::new(HostPolicy::new(hosts, origins)),
            max_body_bytes: server.max_body_bytes,
        };
        let options = ServeOptions {
            max_connections: server.max_connections,
            header_read_timeout: server.header_read_timeout.0,
            shutdown_grace: server.shutdown_grace.0,
        };
        Ok(Self { routes, parts, options, shutdown })
    }

    /// Whether requests are served without authentication.
    pub fn is_open(&self) -> bool {
        matches!(self.parts.authenticator, Authenticator::None)
    }

    /// The names of the backends.
    pub fn backend_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.routes.backends().map(|b| b.name().to_string()).collect();
        names.sort();
        names
    }

    /// Serves on `listener` until `shutdown` completes, then drains and stops every backend.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        serve(listener, build(self.parts.clone()), self.options.clone(), self.shutdown.clone(), shutdown).await;
        for backend in self.routes.backends() {
            backend.shutdown().await;
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
        let error = build("\n[backends.fs]\nkind = \"native\"\n", &[(ENV_USERNAME, "a"), (ENV_PASSWORD, "b")])
            .unwrap_err();
        assert!(error.starts_with("berth.toml:2: `backends.fs.service`"), "{error}");
        assert!(error.contains("conformance"), "{error}");
    }

    #[test]
    fn a_missing_users_file_is_reported() {
        let error = build("[auth]\nusers_file = \"/nonexistent/htpasswd\"\n", &[]).unwrap_err();
        assert!(error.starts_with("berth.toml:2: `auth.users_file`"), "{error}");
    }
}
