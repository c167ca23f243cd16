//! The typed configuration (`berth.toml`): parsing, `${ENV}` interpolation and validation.
//!
//! Everything is checked before a port is bound. A bad file is reported with its path, line and
//! field so that `berth check` and a failed start-up say exactly what to fix.

mod backend;
mod ops;
pub(crate) mod state;
mod throttle;
mod tls;
mod values;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use toml::Spanned;

use crate::{
    allow_ips::AllowIps,
    auth::{Tokens, tokens},
    host::{BaseDomain, HostPattern, Origin, parse_origin},
    ip_block::IpBlock,
};

pub(crate) use backend::{
    AccessSpec, BackendConfig, BackendSpec, DockerSpec, ExecSpec, HttpSpec, LaunchSpec, ProcessSpec, Sharing,
    StartMode, StdioSpec,
};
pub(crate) use ops::{AdminConfig, AuditConfig};
pub(crate) use ops::{AuditSpec, AuditTarget, check_distinct};
pub(crate) use throttle::{RateConfig, ThrottleConfig};
pub(crate) use tls::TlsConfig;
pub(crate) use values::{ConfigDuration, EnvSecret, EnvString, allow_list, parse_listen};

/// The variable naming the user created from the environment.
pub(crate) const ENV_USERNAME: &str = "BERTH_AUTH_USERNAME";
/// The variable holding that user's password.
pub(crate) const ENV_PASSWORD: &str = "BERTH_AUTH_PASSWORD";

/// A configuration that could not be loaded; the message names the file, line and field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The file parsed but a value is not acceptable.
    #[error("{path}{}: `{field}`: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file (or `<defaults>` when no file was given).
        path: PathBuf,
        /// 1-based line of the field, when it is known.
        line: Option<usize>,
        /// The dotted path of the field, e.g. `backends.fs.service`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener, host names and limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Who may call the MCP routes.
    #[serde(default)]
    pub auth: AuthSetting,
    /// The admin listener (`/metrics`, `/api`), off unless `admin.listen` is set.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The audit log, off unless `audit.file` is set.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The backends, by name; each is served at `/<name>/mcp`.
    #[serde(default)]
    pub backends: BTreeMap<String, Spanned<BackendConfig>>,
    /// Where the configuration was read from, for error messages.
    #[serde(skip)]
    pub source: Source,
    /// The `--listen` (or `BERTH_LISTEN`) that replaced `server.listen`, applied again to the
    /// file at each reload.
    #[serde(skip)]
    pub listen_override: Option<SocketAddr>,
    /// The typed values validation made of the raw ones.
    #[serde(skip)]
    pub(crate) validated: Validated,
    /// The backends that came from `admin.state_file` (made through the admin API).
    #[serde(skip)]
    pub(crate) dynamic: std::collections::BTreeSet<String>,
    /// The configuration file's text as it was read ([`Config::load`]), which
    /// `server.watch_config` compares the file with.
    #[serde(skip)]
    pub(crate) file_text: String,
}

/// What validation made of the values the gateway is built from, kept typed so that nothing is
/// parsed twice and the gateway needs no `expect`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Validated {
    /// The backends, by name.
    pub(crate) backends: BTreeMap<String, BackendSpec>,
    /// `server.public_hosts`.
    pub(crate) public_hosts: Vec<HostPattern>,
    /// `server.allowed_origins`.
    pub(crate) allowed_origins: Vec<Origin>,
    /// `server.base_domain`.
    pub(crate) base_domain: Option<BaseDomain>,
    /// `server.trusted_proxies`.
    pub(crate) trusted_proxies: Vec<IpBlock>,
    /// `server.allow_ips`.
    pub(crate) allow_ips: Option<AllowIps>,
    /// Each backend's `allow_ips` and `allow`.
    pub(crate) access: BTreeMap<String, AccessSpec>,
    /// `[[auth.tokens]]`.
    pub(crate) tokens: Tokens,
    /// `admin.listen`.
    pub(crate) admin_listen: Option<SocketAddr>,
    /// `[audit]`.
    pub(crate) audit: Option<AuditSpec>,
}

/// Where a configuration came from, so that later validation errors can name a line.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The file, or `None` for the built-in defaults.
    pub path: Option<PathBuf>,
    /// The text of the file.
    pub text: String,
}

impl Source {
    /// The 1-based line of a byte offset in the file.
    pub fn line_of(&self, offset: usize) -> Option<usize> {
        self.path.as_ref()?;
        let offset = offset.min(self.text.len());
        Some(self.text[..offset].bytes().filter(|b| *b == b'\n').count() + 1)
    }

    /// The name used for this source in messages.
    pub fn display_path(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(|| PathBuf::from("<defaults>"))
    }

    /// An [`ConfigError::Invalid`] for a field, with the line of `span` when there is one.
    pub fn invalid(
        &self,
        span: Option<std::ops::Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.display_path(),
            line: span.and_then(|span| self.line_of(span.start)),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `[server]`: the listener and what the HTTP stack accepts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on (`BERTH_LISTEN` and `--listen` override it).
    #[serde(deserialize_with = "values::listen_address")]
    pub listen: SocketAddr,
    /// Host names clients use to reach berth (`mcp.example.com`, `*.mcp.example.com`).
    /// Empty means any `Host` is accepted.
    pub public_hosts: Vec<Spanned<EnvString>>,
    /// Extra browser origins allowed besides those of the public hosts
    /// (`https://app.example.com`).
    pub allowed_origins: Vec<Spanned<EnvString>>,
    /// With `base_domain = "mcp.example.com"`, `fs.mcp.example.com/mcp` reaches backend `fs`.
    pub base_domain: Option<Spanned<EnvString>>,
    /// Largest accepted POST body, in bytes.
    pub max_body_bytes: usize,
    /// Most connections served at once. When every slot is taken, a newcomer makes room by
    /// closing the connection idle longest (one that never sent a request first); only when
    /// every connection has a request in flight does it wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send a complete request head: the first one from the moment the
    /// connection is accepted (after the TLS handshake), whatever the protocol, and on HTTP/1
    /// each following one from the end of the previous response.
    pub header_read_timeout: ConfigDuration,
    /// Time a request body has to arrive completely once its head has been read; a `POST` whose
    /// body is late gets 408.
    pub body_read_timeout: ConfigDuration,
    /// Time a connection may stay open with no request in flight (HTTP/1 keep-alive between
    /// requests, HTTP/2 with no open stream) before it is closed gracefully. On HTTP/1 the
    /// `header_read_timeout` for the next request head usually ends an idle connection first.
    pub connection_idle_timeout: ConfigDuration,
    /// Interval of HTTP/2 PING frames; a peer that does not answer one within the same interval
    /// is considered dead and its connection closed, SSE streams included.
    pub http2_keep_alive_interval: ConfigDuration,
    /// Time in-flight requests get to finish at shutdown before connections are closed.
    pub shutdown_grace: ConfigDuration,
    /// Interval of SSE keep-alive comments on open streams.
    pub sse_keep_alive: ConfigDuration,
    /// Peers (IP addresses or CIDR blocks) whose `X-Forwarded-For/-Proto/-Host` are believed:
    /// the reverse proxy in front of berth. Other peers' `X-Forwarded-*` are removed.
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Client addresses (IPs or CIDR blocks) that may use any MCP route; others get 403 before
    /// authentication. Without it, every address may. `/` and `/readyz` stay public.
    pub allow_ips: Option<Spanned<Vec<String>>>,
    /// Terminate TLS in berth itself, when no reverse proxy does.
    pub tls: Option<TlsConfig>,
    /// Reload the configuration when the file changes (as SIGHUP does).
    pub watch_config: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            public_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            base_domain: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_connections: 4096,
            header_read_timeout: ConfigDuration(Duration::from_secs(10)),
            body_read_timeout: ConfigDuration(Duration::from_secs(30)),
            connection_idle_timeout: ConfigDuration(Duration::from_secs(120)),
            http2_keep_alive_interval: ConfigDuration(Duration::from_secs(30)),
            shutdown_grace: ConfigDuration(Duration::from_secs(10)),
            sse_keep_alive: ConfigDuration(Duration::from_secs(15)),
            trusted_proxies: Vec::new(),
            allow_ips: None,
            tls: None,
            watch_config: false,
        }
    }
}

/// `auth = "none"` or an `[auth]` table.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // One per configuration, read once.
pub enum AuthSetting {
    /// No authentication at all; only allowed when written explicitly.
    None,
    /// HTTP Basic authentication.
    Basic(BasicAuthConfig),
}

impl Default for AuthSetting {
    fn default() -> Self {
        Self::Basic(BasicAuthConfig::default())
    }
}

/// `"none"`, or the `[auth]` table.
impl Serialize for AuthSetting {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::None => serializer.serialize_str("none"),
            Self::Basic(basic) => basic.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for AuthSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = AuthSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the string \"none\" or an [auth] table")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "none" => Ok(AuthSetting::None),
                    other => Err(E::custom(format!(
                        "auth = \"{other}\" is not known: write auth = \"none\" or an [auth] table"
                    ))),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                BasicAuthConfig::deserialize(de::value::MapAccessDeserializer::new(map)).map(AuthSetting::Basic)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `[auth]`: HTTP Basic users.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuthConfig {
    /// The realm named in `WWW-Authenticate`.
    pub realm: String,
    /// An htpasswd file with bcrypt hashes (`berth hash-password` prints a line).
    pub users_file: Option<Spanned<EnvString>>,
    /// Users written in the file itself.
    pub users: Vec<Spanned<UserConfig>>,
    /// How many verified credentials are remembered, so that bcrypt runs once per credential.
    pub cache_size: usize,
    /// `[auth.throttle]`: failed-login throttling.
    pub throttle: ThrottleConfig,
    /// `[auth.groups]`: group name → user names, for users of any source.
    pub groups: BTreeMap<String, Spanned<Vec<String>>>,
    /// `[[auth.tokens]]`: API tokens, by the SHA-256 of each (`berth token create`).
    pub tokens: Vec<Spanned<TokenConfig>>,
}

impl Default for BasicAuthConfig {
    fn default() -> Self {
        Self {
            realm: "berth".into(),
            users_file: None,
            users: Vec::new(),
            cache_size: 1024,
            throttle: ThrottleConfig::default(),
            groups: BTreeMap::new(),
            tokens: Vec::new(),
        }
    }
}

/// One `[[auth.users]]` entry: a name and either a bcrypt hash or a password.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user name.
    pub name: String,
    /// A bcrypt hash (`$2b$...`).
    #[serde(serialize_with = "values::redacted")]
    pub password_hash: Option<EnvString>,
    /// A clear-text password, normally `${SOME_ENV_VAR}`.
    pub password: Option<EnvSecret>,
    /// Whether the user may use the admin listener.
    #[serde(default)]
    pub admin: bool,
    /// The groups the user belongs to (`backends.<name>.allow = ["group:dev"]`).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One `[[auth.tokens]]` entry, as `berth token create` prints it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token's name; its identity is `token:<name>`.
    pub name: String,
    /// The SHA-256 of the token, 64 hex digits (the token itself is never stored).
    #[serde(serialize_with = "values::redacted")]
    pub sha256: String,
    /// The token's groups, for backends' `allow` lists.
    #[serde(default)]
    pub groups: Vec<String>,
    /// When it stops working: `2027-01-01` (midnight UTC) or an RFC 3339 time.
    pub expires: Option<String>,
}

/// Parses a token's `expires`: a date (the start of that day, UTC) or an RFC 3339 time.
pub(crate) fn parse_expiry(text: &str) -> Result<std::time::SystemTime, String> {
    let wrong = || format!("`{text}` is not a date such as 2027-01-01 or an RFC 3339 time");
    let time = match time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")) {
        Ok(date) => date.midnight().assume_utc(),
        Err(_) => {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|_| wrong())?
        }
    };
    Ok(time.into())
}

impl Config {
    /// Serves on `listen` instead of `server.listen` (`--listen`, `BERTH_LISTEN`).
    pub fn override_listen(&mut self, listen: SocketAddr) {
        self.server.listen = listen;
        self.listen_override = Some(listen);
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
        let mut config = Self::parse(&text, Some(path))?;
        config.file_text.clone_from(&text);
        // The backends made through the admin API, validated as if they were in this file.
        match state::path_of(&config) {
            None => Ok(config),
            Some(state_path) if state_path == path => Err(config.source.invalid(
                config.admin.state_file.as_ref().map(|file| file.span()),
                "admin.state_file",
                "must not be the configuration file itself",
            )),
            Some(state_path) => {
                let mut merged = state::merged(&text, Some(path), &state::read(&state_path)?, &state_path)?;
                merged.file_text = text;
                Ok(merged)
            }
        }
    }

    /// Parses and validates TOML text; `path` is used in error messages.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|error| {
            let (line, column) = error.span().map(|span| line_column(text, span.start)).unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.map(Path::to_owned).unwrap_or_else(|| PathBuf::from("<text>")),
                line,
                column,
                message: error.message().trim().to_string(),
            }
        })?;
        config.source = Source {
            path: Some(path.map(Path::to_owned).unwrap_or_else(|| PathBuf::from("<text>"))),
            text: text.to_owned(),
        };
        config.validate()?;
        Ok(config)
    }

    /// The configuration used when no file is given: defaults, users from the environment, and
    /// every built-in native service under its own name.
    pub fn builtin(native_services: impl IntoIterator<Item = String>) -> Result<Self, ConfigError> {
        let mut config = Config {
            server: ServerConfig::default(),
            auth: AuthSetting::default(),
            admin: AdminConfig::default(),
            audit: AuditConfig::default(),
            backends: BTreeMap::new(),
            source: Source::default(),
            validated: Validated::default(),
            listen_override: None,
            dynamic: Default::default(),
            file_text: String::new(),
        };
        for name in native_services {
            let backend: BackendConfig =
                toml::from_str("kind = \"native\"\nrequired = true").expect("a valid backend table");
            config.backends.insert(name, Spanned::new(0..0, backend));
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every value and stores the typed ones in [`Config::validated`].
    fn validate(&mut self) -> Result<(), ConfigError> {
        let source = &self.source;
        let mut backends = BTreeMap::new();
        let mut access = BTreeMap::new();
        for (name, backend) in &self.backends {
            let invalid = |(field, message)| source.invalid(Some(backend.span()), field, message);
            let spec = AccessSpec {
                allow_ips: backend.get_ref().allow_ips(name).map_err(invalid)?,
                allow: backend.get_ref().allow(name).map_err(invalid)?,
                rate_limit: backend.get_ref().rate_limit(name).map_err(invalid)?,
                visibility: backend.get_ref().visibility(name).map_err(invalid)?,
            };
            if spec.allow.is_some() && matches!(self.auth, AuthSetting::None) {
                return Err(invalid((
                    format!("backends.{name}.allow"),
                    "auth = \"none\" has no identities to allow".to_string(),
                )));
            }
            access.insert(name.clone(), spec);
            validate_backend_name(name)
                .map_err(|message| source.invalid(Some(backend.span()), format!("backends.{name}"), message))?;
            let spec = backend
                .get_ref()
                .validate(name)
                .map_err(|(field, message)| source.invalid(Some(backend.span()), field, message))?;
            backends.insert(name.clone(), spec);
        }
        let server = &self.server;
        let public_hosts = server
            .public_hosts
            .iter()
            .map(|host| {
                HostPattern::parse(host.get_ref())
                    .map_err(|message| source.invalid(Some(host.span()), "server.public_hosts", message))
            })
            .collect::<Result<_, _>>()?;
        let allowed_origins = server
            .allowed_origins
            .iter()
            .map(|origin| {
                parse_origin(origin.get_ref()).ok_or_else(|| {
                    source.invalid(
                        Some(origin.span()),
                        "server.allowed_origins",
                        format!("`{}` is not an origin such as https://app.example.com", origin.get_ref()),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let base_domain = server
            .base_domain
            .as_ref()
            .map(|domain| {
                BaseDomain::parse(domain.get_ref())
                    .map_err(|message| source.invalid(Some(domain.span()), "server.base_domain", message))
            })
            .transpose()?;
        let trusted_proxies = server
            .trusted_proxies
            .iter()
            .map(|proxy| {
                IpBlock::parse(proxy.get_ref())
                    .map_err(|message| source.invalid(Some(proxy.span()), "server.trusted_proxies", message))
            })
            .collect::<Result<_, _>>()?;
        let allow_ips = server
            .allow_ips
            .as_ref()
            .map(|list| {
                allow_list(list.get_ref().iter().map(String::as_str))
                    .map_err(|message| source.invalid(Some(list.span()), "server.allow_ips", message))
            })
            .transpose()?;
        if let Some(tls) = &server.tls
            && tls.reload_interval.0.is_zero()
        {
            return Err(source.invalid(None, "server.tls.reload_interval", "must be greater than zero"));
        }
        // A zero keep-alive is a zero tokio interval period, which panics when a stream opens.
        if server.sse_keep_alive.0.is_zero() {
            return Err(source.invalid(None, "server.sse_keep_alive", "must be greater than zero"));
        }
        let positive =
            [("server.max_body_bytes", server.max_body_bytes), ("server.max_connections", server.max_connections)];
        for (field, value) in positive {
            if value == 0 {
                return Err(source.invalid(None, field, "must be greater than zero"));
            }
        }
        // The connection limit is a semaphore, which panics when given more permits than it holds.
        if server.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(source.invalid(
                None,
                "server.max_connections",
                format!("must be at most {}", tokio::sync::Semaphore::MAX_PERMITS),
            ));
        }
        // A zero deadline would close every connection before it could speak.
        let deadlines = [
            ("server.header_read_timeout", server.header_read_timeout),
            ("server.body_read_timeout", server.body_read_timeout),
            ("server.connection_idle_timeout", server.connection_idle_timeout),
            ("server.http2_keep_alive_interval", server.http2_keep_alive_interval),
        ];
        for (field, value) in deadlines {
            if value.0.is_zero() {
                return Err(source.invalid(None, field, "must be greater than zero"));
            }
        }
        if let AuthSetting::Basic(basic) = &self.auth {
            basic.throttle.validate(source)?;
            for user in &basic.users {
                let entry = user.get_ref();
                if entry.name.is_empty() || entry.name.contains(':') {
                    return Err(source.invalid(
                        Some(user.span()),
                        "auth.users.name",
                        "a user name must be non-empty and contain no `:`",
                    ));
                }
                if entry.password.is_some() == entry.password_hash.is_some() {
                    return Err(source.invalid(
                        Some(user.span()),
                        "auth.users",
                        format!("user `{}` needs exactly one of `password` or `password_hash`", entry.name),
                    ));
                }
            }
        }
        let mut tokens = Tokens::default();
        if let AuthSetting::Basic(basic) = &self.auth {
            for entry in &basic.tokens {
                let (span, token) = (Some(entry.span()), entry.get_ref());
                if !tokens::valid_name(&token.name) {
                    return Err(source.invalid(
                        span,
                        "auth.tokens.name",
                        "a token name is letters, digits, `.`, `_`, `-`",
                    ));
                }
                if tokens.contains(&token.name) {
                    return Err(source.invalid(
                        span,
                        "auth.tokens.name",
                        format!("token `{}` is defined twice", token.name),
                    ));
                }
                let digest = tokens::parse_digest(&token.sha256).ok_or_else(|| {
                    source.invalid(
                        span.clone(),
                        "auth.tokens.sha256",
                        "64 hex digits, as `berth token create` prints them",
                    )
                })?;
                let expires = token
                    .expires
                    .as_deref()
                    .map(parse_expiry)
                    .transpose()
                    .map_err(|message| source.invalid(span.clone(), "auth.tokens.expires", message))?;
                tokens.add(&token.name, digest, expires);
            }
        }
        let admin_listen = self.admin.validate(source, server.listen)?;
        let audit = self.audit.validate(source)?;
        self.validated = Validated {
            backends,
            public_hosts,
            allowed_origins,
            base_domain,
            trusted_proxies,
            allow_ips,
            access,
            tokens,
            admin_listen,
            audit,
        };
        Ok(())
    }
}

/// Backend names become URL path segments and DNS labels, so they are kept to what both allow.
fn validate_backend_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "backend name `{name}` must be 1-63 lowercase letters, digits or inner dashes (it is a URL segment and a DNS label)"
        ))
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Some(Path::new("berth.toml"))).map_err(|e| e.to_string())
    }

    #[test]
    fn a_minimal_file_gets_defaults() {
        let config = parse("[backends.conformance]\nkind = \"native\"\n").unwrap();
        assert_eq!(config.server.listen, "0.0.0.0:8080".parse().unwrap());
        assert!(matches!(config.auth, AuthSetting::Basic(_)));
        assert_eq!(config.backends.len(), 1);
    }

    #[test]
    fn auth_none_must_be_spelled_out() {
        assert!(matches!(parse("auth = \"none\"\n").unwrap().auth, AuthSetting::None));
        let error = parse("auth = \"off\"\n").unwrap_err();
        assert!(error.starts_with("berth.toml:1:"), "{error}");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let table = [
            ("[server]\nlisten = \"0.0.0.0:8080\"\nbogus = 1\n", "berth.toml:3:", "bogus"),
            ("[backends.fs]\nkind = \"nosuch\"\n", "berth.toml:", "nosuch"),
            ("[server]\nheader_read_timeout = \"ten\"\n", "berth.toml:2:", "duration"),
            ("[server]\npublic_hosts = [\"ok.example.com\",\n \"bad host\"]\n", "berth.toml:3", "server.public_hosts"),
            ("[server]\nallowed_origins = [\"app.example.com\"]\n", "berth.toml:2", "server.allowed_origins"),
            ("[server]\nbase_domain = \"*.mcp.example.com\"\n", "berth.toml:2", "server.base_domain"),
            ("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", "berth.toml:2", "server.trusted_proxies"),
            ("[server]\nallow_ips = [\"10.0.0.0/8\", \"fd00::/129\"]\n", "berth.toml:2", "server.allow_ips"),
            ("[server]\nallow_ips = []\n", "berth.toml:2", "allows no client"),
            (
                "[backends.fs]\nkind = \"native\"\nrate_limit = { calls = 0, per = \"1m\" }\n",
                "berth.toml:1",
                "backends.fs.rate_limit",
            ),
            (
                "[backends.fs]\nkind = \"native\"\nrate_limit = { calls = 10, per = \"1m\", bogus = 1 }\n",
                "berth.toml:3",
                "bogus",
            ),
            (
                "[backends.fs]\nkind = \"native\"\nallow_ips = [\"example.com\"]\n",
                "berth.toml:1",
                "backends.fs.allow_ips",
            ),
            ("[backends.Bad_Name]\nkind = \"native\"\n", "berth.toml:1", "backends.Bad_Name"),
            ("[[auth.users]]\nname = \"a\"\n", "berth.toml:1", "exactly one of"),
            (
                "[[auth.users]]\nname = \"a\"\npassword = \"${BERTH_TEST_SURELY_UNSET}\"\n",
                "berth.toml:3:",
                "BERTH_TEST_SURELY_UNSET",
            ),
            ("[server]\nmax_connections = 0\n", "berth.toml", "server.max_connections"),
            (
                "[auth.throttle]\naddress = { guesses = 0, per = \"10m\", burst = 5 }\n",
                "berth.toml",
                "auth.throttle.address",
            ),
            (
                "[auth.throttle]\nuser = { guesses = 1000000, per = \"1ms\", burst = 5 }\n",
                "berth.toml",
                "auth.throttle.user",
            ),
            ("[auth.throttle]\ntracked = 0\n", "berth.toml", "auth.throttle.tracked"),
            ("[auth.throttle]\naddress = { guesses = 1 }\n", "berth.toml:2", "missing field"),
            // tokio panics on a zero keep-alive period, and on more permits than a semaphore holds.
            ("[server]\nsse_keep_alive = \"0s\"\n", "berth.toml", "server.sse_keep_alive"),
            ("[server]\nmax_connections = 9223372036854775807\n", "berth.toml", "server.max_connections"),
            ("[server]\nheader_read_timeout = \"0s\"\n", "berth.toml", "server.header_read_timeout"),
            ("[server]\nbody_read_timeout = 0\n", "berth.toml", "server.body_read_timeout"),
            ("[server]\nconnection_idle_timeout = \"0ms\"\n", "berth.toml", "server.connection_idle_timeout"),
            ("[server]\nhttp2_keep_alive_interval = \"0s\"\n", "berth.toml", "server.http2_keep_alive_interval"),
            (
                "[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\nlisten = \"127.0.0.1:8080\"\n",
                "berth.toml:4",
                "admin.listen",
            ),
            ("[admin]\nlisten = \"9180\"\n", "berth.toml:2", "admin.listen"),
            ("[admin]\nusers = [\"a\"]\n", "berth.toml", "admin.listen"),
            ("[audit]\nfile = \"stderr\"\nmax_size = \"1m\"\n", "berth.toml:3", "audit.max_size"),
            ("[audit]\nfile = \"a.log\"\nmax_size = \"big\"\n", "berth.toml:3", "audit.max_size"),
        ];
        for (text, prefix, needle) in table {
            let error = parse(text).unwrap_err();
            assert!(error.starts_with(prefix), "{text:?} gave {error}");
            assert!(error.contains(needle), "{text:?} gave {error}");
        }
    }

    /// Backend fields are checked after parsing and name the line of their table; durations are
    /// checked while the file is read and name the line and column of the value.
    #[test]
    fn values_that_would_overflow_are_errors_naming_the_line() {
        let docker = "\n[backends.x]\nkind = \"docker\"\nimage = \"i\"\n";
        let table = [
            (
                format!("{docker}memory = \"9999999999g\"\n"),
                "test.toml:2: `backends.x.memory`: `9999999999g` is more than",
            ),
            (format!("{docker}cpus = 1e-12\n"), "test.toml:2: `backends.x.cpus`: must be at least"),
            (
                format!("{docker}request_timeout = \"5124095576030432h\"\n"),
                "test.toml:5:19: `5124095576030432h` is longer",
            ),
            (
                "[server]\nshutdown_grace = 9223372036854775807\n".into(),
                "test.toml:2:18: 9223372036854775807 seconds is longer than 100 years",
            ),
        ];
        for (text, expected) in table {
            let error = Config::parse(&text, Some(Path::new("test.toml"))).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{text:?} gave {error}");
        }
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
