//! `[backends.<name>]`: one strict table for every kind, validated into a typed [`BackendSpec`].
//!
//! A single flat table (rather than a serde-tagged enum) keeps `deny_unknown_fields` and the
//! line numbers of errors; validation then rejects fields that do not belong to the `kind`
//! ("`image` is not a field of kind = \"process\"") and builds the typed spec.

use std::{
    collections::BTreeMap,
    num::{IntErrorKind, NonZeroU32, ParseIntError},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::values::{ConfigDuration, EnvSecret, EnvString, allow_list};
use crate::{
    access::{Allow, Principal},
    allow_ips::AllowIps,
    rate_limit::CallRate,
    visibility::{Patterns, View, Visibility},
};

/// The raw table, as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `native`, `process`, `docker`, `docker-exec` or `http`.
    pub kind: BackendKindName,
    /// Whether `/readyz` waits for this backend.
    #[serde(default)]
    pub required: bool,
    /// Client addresses (IPs or CIDR blocks) that may use this backend; others get 403.
    /// Without it, every address the server admits may.
    pub allow_ips: Option<Vec<String>>,
    /// The identities that may use this backend: `user:<name>`, `group:<name>`; others get
    /// 403. Without it, every authenticated identity may.
    pub allow: Option<Vec<String>>,
    /// Calls (JSON-RPC requests) per identity: `{ calls = 600, per = "1m" }`, optionally
    /// `burst` (default `calls`); beyond it 429.
    pub rate_limit: Option<CallRateConfig>,
    /// The tools clients see, by name: `{ allow = ["read_*"], deny = ["delete_*"] }`.
    pub tools: Option<PatternsConfig>,
    /// The prompts clients see, by name.
    pub prompts: Option<PatternsConfig>,
    /// The resources clients see, by URI (templates by their `uriTemplate`).
    pub resources: Option<PatternsConfig>,
    /// `[backends.<name>.access.<group>]`: what members of a group see instead.
    pub access: Option<BTreeMap<String, ViewConfig>>,

    /// native: the registered service (defaults to the backend's name).
    pub service: Option<String>,

    /// process: the program to run; docker-exec: the program to run in the container.
    pub command: Option<EnvString>,
    /// process: pass berth's whole environment on (minus `BERTH_*`) instead of only `PATH`,
    /// `HOME`, `TMPDIR`, `TZ` and the locale (default false). Containers never inherit it.
    pub inherit_env: Option<bool>,
    /// process, docker-exec: its arguments; docker: the container's command (overrides the
    /// image's CMD).
    pub args: Option<Vec<EnvString>>,
    /// process: the working directory; docker: the container's working directory; docker-exec:
    /// the exec's working directory in the container.
    pub cwd: Option<EnvString>,

    /// docker-exec: the running container (name or id) the server is started in.
    pub container: Option<String>,

    /// docker: the image.
    pub image: Option<String>,
    /// docker: `never` (default) or `if-missing`.
    pub image_pull: Option<ImagePull>,
    /// docker: the entrypoint, overriding the image's.
    pub entrypoint: Option<Vec<String>>,
    /// docker: `none` (default) or another Docker network mode.
    pub network_mode: Option<String>,
    /// docker: capabilities dropped (default `["ALL"]`).
    pub cap_drop: Option<Vec<String>>,
    /// docker: capabilities added back.
    pub cap_add: Option<Vec<String>>,
    /// docker: read-only root filesystem (default true).
    pub read_only: Option<bool>,
    /// docker: tmpfs mounts (default `["/tmp"]`).
    pub tmpfs: Option<Vec<String>>,
    /// docker: memory limit such as `"512m"` (default `"512m"`).
    pub memory: Option<String>,
    /// docker: CPU limit in cores (default 1.0).
    pub cpus: Option<f64>,
    /// docker: most processes in the container (default 256).
    pub pids_limit: Option<i64>,
    /// docker: the user to run as (default `"65534:65534"`, nobody); `""` keeps the image's.
    /// docker-exec: the user the exec runs as (default: the container's).
    pub user: Option<String>,
    /// docker: run an init process that reaps zombies (default true).
    pub init: Option<bool>,
    /// docker: set `no-new-privileges` (default true).
    pub no_new_privileges: Option<bool>,
    /// docker: bind mounts `"host:container"`, read-only unless `":rw"` is appended.
    pub volumes: Option<Vec<EnvString>>,

    /// process, docker: environment variables of the server (shown by name only: values are
    /// often API keys).
    #[serde(serialize_with = "super::values::redacted_values")]
    pub env: Option<BTreeMap<String, EnvString>>,
    /// process, docker: environment variables read from files (secrets; never logged).
    pub env_files: Option<BTreeMap<String, EnvString>>,
    /// process, docker: `shared` (default) or `per-session`.
    pub sharing: Option<Sharing>,
    /// process, docker: `lazy` (default) or `eager`.
    pub start: Option<StartMode>,
    /// process, docker: how long a request may wait for its answer; progress notifications
    /// restart the clock (default 10m). http: how long the upstream may take to begin its
    /// answer (its status and headers; a stream then lasts as long as it lasts; default 10m).
    pub request_timeout: Option<ConfigDuration>,
    /// process, docker: how long the start and the initialize handshake may take (default 60s).
    pub startup_timeout: Option<ConfigDuration>,
    /// process, docker: per-session instances idle this long are stopped (default 15m).
    pub idle_timeout: Option<ConfigDuration>,
    /// process, docker: most per-session instances at once (default 64).
    pub max_instances: Option<usize>,
    /// process, docker: largest JSON-RPC message accepted from the server (default 16 MiB).
    pub max_message_bytes: Option<usize>,
    /// process, docker: time the server gets to exit after its stdin closes (default 5s).
    pub stop_grace: Option<ConfigDuration>,
    /// process, docker: how long a client has to resume a stream whose connection dropped
    /// before berth cancels the stream's requests on the server (default 30s).
    pub resume_window: Option<ConfigDuration>,
    /// process, docker: most messages a session keeps for replay to resuming streams
    /// (default 256).
    pub replay_events: Option<usize>,
    /// process, docker: most bytes a session keeps for replay, such as `"1m"` (default 1 MiB).
    pub replay_bytes: Option<String>,
    /// http: the upstream MCP endpoint, `http://` or `https://` (`https://mcp.example.com/mcp`).
    pub url: Option<EnvString>,
    /// http: `streamable-http` (default; both protocol generations) or `sse` (the legacy
    /// HTTP+SSE transport of 2024-11-05).
    pub transport: Option<Transport>,
    /// http: headers berth adds to every request to the upstream (shown by name only: values
    /// are often credentials).
    #[serde(serialize_with = "super::values::redacted_values")]
    pub headers: Option<BTreeMap<String, EnvSecret>>,
    /// http: headers whose values are read from files (secrets; never logged).
    pub header_files: Option<BTreeMap<String, EnvString>>,
    /// http: Basic credentials for the upstream: `{ user = "...", password = "${PW}" }`.
    pub basic: Option<UpstreamBasic>,
    /// http: a bearer token for the upstream (`Authorization: Bearer <token>`).
    pub bearer: Option<EnvSecret>,
    /// http: a PEM file of the certificate authorities that sign the upstream's certificate,
    /// trusted instead of the system's roots.
    pub ca_file: Option<EnvString>,
    /// http: how long a TCP connection (and TLS handshake) to the upstream may take (default 10s).
    pub connect_timeout: Option<ConfigDuration>,
    /// http: how often berth checks that the upstream answers (default 5s).
    pub probe_interval: Option<ConfigDuration>,

    /// process, docker: the roots a shared instance's server is given when it asks for them
    /// (`roots/list`); berth answers for every session, never one user's client (default none).
    pub roots: Option<Vec<RootConfig>>,
}

/// One `roots` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RootConfig {
    /// The root's URI (`file:///data`).
    pub uri: String,
    /// Its name for humans.
    pub name: Option<String>,
}

/// `backends.<name>.basic`: the credentials berth presents to an http upstream.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamBasic {
    /// The user name.
    pub user: EnvString,
    /// The password (`${ENV}` references expanded).
    pub password: EnvSecret,
}

/// `backends.<name>.transport`: how berth speaks to an http upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Streamable HTTP (2025-03-26 and later, both protocol generations).
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05), relayed as a stdio server's pipes.
    Sse,
}

/// The `kind` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKindName {
    /// An rmcp service compiled into berth.
    Native,
    /// A local child process speaking MCP over stdio.
    Process,
    /// A Docker container speaking MCP over its attached stdio.
    Docker,
    /// A process started in a running container (`docker exec -i`), speaking MCP over its
    /// attached stdio.
    #[serde(rename = "docker-exec")]
    DockerExec,
    /// A remote MCP server reached over HTTP.
    Http,
}

impl BackendKindName {
    /// The name as written in the configuration.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Process => "process",
            Self::Docker => "docker",
            Self::DockerExec => "docker-exec",
            Self::Http => "http",
        }
    }
}

/// How client sessions map onto server instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Sharing {
    /// One instance serves every session.
    #[default]
    Shared,
    /// One instance per session.
    PerSession,
}

/// When the (shared) instance starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartMode {
    /// On first use.
    #[default]
    Lazy,
    /// When berth starts.
    Eager,
}

/// Whether berth may pull a missing image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ImagePull {
    /// Never: the image must be present.
    #[default]
    Never,
    /// Pull when the image is not present.
    IfMissing,
}

/// Allow and deny glob patterns (`*` and `?` match any characters).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PatternsConfig {
    /// Only what matches one of these is visible (default: everything).
    pub allow: Option<Vec<String>>,
    /// Nothing that matches one of these is visible.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// One `[backends.<name>.access.<group>]` table.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    /// The tools the group sees.
    pub tools: Option<PatternsConfig>,
    /// The prompts the group sees.
    pub prompts: Option<PatternsConfig>,
    /// The resources the group sees.
    pub resources: Option<PatternsConfig>,
}

impl ViewConfig {
    fn view(&self, field: &str) -> Result<View, (String, String)> {
        let patterns = |name: &str, config: &Option<PatternsConfig>| {
            let config = config.clone().unwrap_or_default();
            Patterns::new(config.allow.as_deref(), &config.deny).map_err(|message| (format!("{field}.{name}"), message))
        };
        Ok(View {
            tools: patterns("tools", &self.tools)?,
            prompts: patterns("prompts", &self.prompts)?,
            resources: patterns("resources", &self.resources)?,
        })
    }
}

/// `backends.<name>.rate_limit`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallRateConfig {
    /// Calls earned back per `per`.
    pub calls: u32,
    /// The period of `calls`.
    pub per: ConfigDuration,
    /// Calls allowed at once (default `calls`).
    pub burst: Option<u32>,
}

impl CallRateConfig {
    /// The typed rate, or what is wrong with it.
    fn validate(&self) -> Result<CallRate, String> {
        let burst = self.burst.unwrap_or(self.calls);
        let (Some(_), Some(burst)) = (NonZeroU32::new(self.calls), NonZeroU32::new(burst)) else {
            return Err("`calls` and `burst` must be at least 1".into());
        };
        let interval = self.per.0.checked_div(self.calls).unwrap_or_default();
        if interval < Duration::from_micros(1) {
            return Err("`per` divided by `calls` must be at least 1µs".into());
        }
        Ok(CallRate { interval, burst })
    }
}

/// The result of `roots/list` listing `roots`.
fn roots_result(roots: &[RootConfig]) -> String {
    let roots: Vec<serde_json::Value> = roots
        .iter()
        .map(|root| match &root.name {
            Some(name) => serde_json::json!({"uri": root.uri, "name": name}),
            None => serde_json::json!({"uri": root.uri}),
        })
        .collect();
    serde_json::json!({ "roots": roots }).to_string()
}

/// Who may use a backend, from where and how often, whatever its kind.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessSpec {
    /// `allow_ips`.
    pub(crate) allow_ips: Option<AllowIps>,
    /// `allow`.
    pub(crate) allow: Option<Allow>,
    /// `rate_limit`.
    pub(crate) rate_limit: Option<CallRate>,
    /// `tools`, `prompts`, `resources` and `access`, when any is set.
    pub(crate) visibility: Option<Arc<Visibility>>,
}

/// A validated backend. Two are equal when they run the same server the same way (a reload
/// restarts a backend whose spec changed, and only then).
#[derive(Debug, Clone, PartialEq)]
pub enum BackendSpec {
    /// A native service.
    Native {
        /// The registered service name.
        service: String,
    },
    /// A stdio server run as a process or container.
    Stdio(Box<StdioSpec>),
    /// A remote MCP server over HTTP.
    Http(Box<HttpSpec>),
}

/// A validated http backend. Its `Debug` shows header values as `Sensitive`: they are marked
/// so, being credentials more often than not.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    /// The upstream MCP endpoint.
    pub url: http::Uri,
    /// Headers added to every request to the upstream (credentials included), values marked
    /// sensitive.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Certificate authorities trusted instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The TCP connect (and TLS handshake) timeout.
    pub connect_timeout: Duration,
    /// How long the upstream may take to begin an answer.
    pub request_timeout: Duration,
    /// How often the upstream is probed.
    pub probe_interval: Duration,
}

/// What runs the stdio server.
#[derive(Debug, Clone, PartialEq)]
pub enum LaunchSpec {
    /// A local process.
    Process(ProcessSpec),
    /// A Docker container.
    Docker(DockerSpec),
    /// A process in a running container.
    DockerExec(ExecSpec),
    /// A connection to a legacy HTTP+SSE server (`kind = "http"`, `transport = "sse"`).
    Sse(HttpSpec),
}

impl LaunchSpec {
    /// The backend kind's name, as in the configuration.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Process(_) => "process",
            Self::Docker(_) => "docker",
            Self::DockerExec(_) => "docker-exec",
            Self::Sse(_) => "http",
        }
    }

    /// Whether instances are started through a Docker engine.
    pub(crate) fn needs_docker(&self) -> bool {
        matches!(self, Self::Docker(_) | Self::DockerExec(_))
    }
}

/// A validated stdio backend. Its `Debug` shows the values of variables read from `env_files`
/// as `[redacted]`: they are secrets, and `Config`'s `Debug` reaches them.
#[derive(Clone, PartialEq)]
pub struct StdioSpec {
    /// How to start an instance.
    pub launch: LaunchSpec,
    /// Environment of the server (plain values and secrets read from files).
    pub env: Vec<(String, String)>,
    /// Names of the variables that hold secrets, so that they are never logged.
    pub secret_env: Vec<String>,
    /// Sessions to instances.
    pub sharing: Sharing,
    /// When the shared instance starts.
    pub start: StartMode,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Start and handshake timeout.
    pub startup_timeout: Duration,
    /// Idle stop of per-session instances.
    pub idle_timeout: Duration,
    /// Cap on per-session instances.
    pub max_instances: usize,
    /// Largest accepted message from the server.
    pub max_message_bytes: usize,
    /// Time to exit after stdin closes.
    pub stop_grace: Duration,
    /// Time a client has to resume a dropped stream.
    pub resume_window: Duration,
    /// Most messages kept per session for replay.
    pub replay_events: usize,
    /// Most bytes kept per session for replay.
    pub replay_bytes: usize,
    /// The `roots/list` result a shared instance's server gets from berth.
    pub roots_result: String,
}

impl std::fmt::Debug for StdioSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(key, value)| {
                let shown = if self.secret_env.contains(key) { "[redacted]" } else { value.as_str() };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("StdioSpec")
            .field("launch", &self.launch)
            .field("env", &env)
            .field("secret_env", &self.secret_env)
            .field("sharing", &self.sharing)
            .field("start", &self.start)
            .field("request_timeout", &self.request_timeout)
            .field("startup_timeout", &self.startup_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_instances", &self.max_instances)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("stop_grace", &self.stop_grace)
            .field("resume_window", &self.resume_window)
            .field("replay_events", &self.replay_events)
            .field("replay_bytes", &self.replay_bytes)
            .field("roots_result", &self.roots_result)
            .finish()
    }
}

/// A local process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its working directory.
    pub cwd: Option<PathBuf>,
    /// Whether it gets berth's whole environment (minus `BERTH_*`) rather than the minimal one.
    pub inherit_env: bool,
}

/// What a docker backend's containers are made of: berth-docker's template, built and validated
/// here from the configuration.
pub(crate) type DockerSpec = berth_docker::ContainerTemplate;

/// What a docker-exec backend runs, in which container: berth-docker's template, built and
/// validated here from the configuration.
pub(crate) type ExecSpec = berth_docker::ExecTemplate;

/// Parses `"512m"`, `"1g"`, `"65536k"` or a plain number of bytes, refusing sizes beyond
/// Docker's `i64` rather than letting `n * factor` overflow (a panic in debug builds, a negative
/// limit in release).
pub(super) fn parse_bytes(text: &str) -> Result<i64, String> {
    let not_a_size = || format!("`{text}` is not a size such as \"512m\" or \"1g\"");
    let too_large = || format!("`{text}` is more than the largest memory limit, {} bytes (8 EiB)", i64::MAX);
    let lower = text.trim().to_ascii_lowercase();
    let (number, factor): (&str, i64) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some(_) => (lower.as_str(), 1),
        None => return Err(not_a_size()),
    };
    let n: i64 = number.trim().parse().map_err(|error: ParseIntError| match error.kind() {
        IntErrorKind::PosOverflow => too_large(),
        _ => not_a_size(),
    })?;
    if n <= 0 {
        return Err(not_a_size());
    }
    n.checked_mul(factor).ok_or_else(too_large)
}

/// Docker's `NanoCpus` for a limit of `cpus` cores, in billionths of a core.
fn nano_cpus(cpus: f64) -> Result<i64, String> {
    // The range check also refuses NaN, so the product below is finite and at most 1.024e12,
    // well inside i64: the cast cannot saturate.
    if !(cpus > 0.0 && cpus <= 1024.0) {
        return Err("must be a positive number of cores, at most 1024".into());
    }
    let nanos = (cpus * 1e9).round();
    if nanos < 1.0 {
        // Truncated to 0, the limit would silently become none at all: Docker reads 0 so.
        return Err(format!("must be at least 0.000000001 (a billionth of a core), not {cpus}"));
    }
    Ok(nanos as i64)
}

impl BackendConfig {
    /// The names of the fields set in this table that do not belong to its kind.
    fn foreign_fields(&self) -> Vec<&'static str> {
        let native = [("service", self.service.is_some())];
        // process and docker-exec.
        let command = [("command", self.command.is_some())];
        let process = [("inherit_env", self.inherit_env.is_some())];
        let exec = [("container", self.container.is_some())];
        // docker and docker-exec.
        let user = [("user", self.user.is_some())];
        let docker = [
            ("image", self.image.is_some()),
            ("image_pull", self.image_pull.is_some()),
            ("entrypoint", self.entrypoint.is_some()),
            ("network_mode", self.network_mode.is_some()),
            ("cap_drop", self.cap_drop.is_some()),
            ("cap_add", self.cap_add.is_some()),
            ("read_only", self.read_only.is_some()),
            ("tmpfs", self.tmpfs.is_some()),
            ("memory", self.memory.is_some()),
            ("cpus", self.cpus.is_some()),
            ("pids_limit", self.pids_limit.is_some()),
            ("init", self.init.is_some()),
            ("no_new_privileges", self.no_new_privileges.is_some()),
            ("volumes", self.volumes.is_some()),
        ];
        let stdio = [
            ("args", self.args.is_some()),
            ("cwd", self.cwd.is_some()),
            ("env", self.env.is_some()),
            ("env_files", self.env_files.is_some()),
            ("sharing", self.sharing.is_some()),
            ("start", self.start.is_some()),
            ("startup_timeout", self.startup_timeout.is_some()),
            ("idle_timeout", self.idle_timeout.is_some()),
            ("max_instances", self.max_instances.is_some()),
            ("resume_window", self.resume_window.is_some()),
            ("replay_events", self.replay_events.is_some()),
            ("replay_bytes", self.replay_bytes.is_some()),
            ("roots", self.roots.is_some()),
            ("max_message_bytes", self.max_message_bytes.is_some()),
            ("stop_grace", self.stop_grace.is_some()),
        ];
        let http = [
            ("url", self.url.is_some()),
            ("transport", self.transport.is_some()),
            ("headers", self.headers.is_some()),
            ("header_files", self.header_files.is_some()),
            ("basic", self.basic.is_some()),
            ("bearer", self.bearer.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("connect_timeout", self.connect_timeout.is_some()),
            ("probe_interval", self.probe_interval.is_some()),
        ];
        // Shared by the stdio kinds and http.
        let timeout = [("request_timeout", self.request_timeout.is_some())];
        let foreign: Vec<(&'static str, bool)> = match self.kind {
            BackendKindName::Native => {
                [&command[..], &process, &exec, &user, &docker, &stdio, &timeout, &http].concat()
            }
            BackendKindName::Process => [&native[..], &exec, &user, &docker, &http].concat(),
            BackendKindName::Docker => [&native[..], &command, &process, &exec, &http].concat(),
            BackendKindName::DockerExec => [&native[..], &process, &docker, &http].concat(),
            BackendKindName::Http => [&native[..], &command, &process, &exec, &user, &docker, &stdio].concat(),
        };
        foreign.into_iter().filter(|(_, set)| *set).map(|(name, _)| name).collect()
    }

    /// The typed `allow_ips`, if given; errors are `(field, message)`.
    pub(crate) fn allow_ips(&self, name: &str) -> Result<Option<AllowIps>, (String, String)> {
        let Some(list) = &self.allow_ips else { return Ok(None) };
        let field = format!("backends.{name}.allow_ips");
        allow_list(list.iter().map(String::as_str)).map(Some).map_err(|message| (field, message))
    }

    /// The typed `tools`, `prompts`, `resources` and `access`, when any is set; errors are
    /// `(field, message)`.
    pub(crate) fn visibility(&self, name: &str) -> Result<Option<Arc<Visibility>>, (String, String)> {
        let own =
            ViewConfig { tools: self.tools.clone(), prompts: self.prompts.clone(), resources: self.resources.clone() };
        let set = own.tools.is_some() || own.prompts.is_some() || own.resources.is_some() || self.access.is_some();
        if !set {
            return Ok(None);
        }
        let default = own.view(&format!("backends.{name}"))?;
        let mut groups = BTreeMap::new();
        for (group, view) in self.access.iter().flatten() {
            groups.insert(group.clone(), view.view(&format!("backends.{name}.access.{group}"))?);
        }
        Ok(Some(Arc::new(Visibility { default, groups })))
    }

    /// The typed `rate_limit`, if given; errors are `(field, message)`.
    pub(crate) fn rate_limit(&self, name: &str) -> Result<Option<CallRate>, (String, String)> {
        self.rate_limit
            .as_ref()
            .map(CallRateConfig::validate)
            .transpose()
            .map_err(|message| (format!("backends.{name}.rate_limit"), message))
    }

    /// The typed `allow`, if given; errors are `(field, message)`.
    pub(crate) fn allow(&self, name: &str) -> Result<Option<Allow>, (String, String)> {
        let Some(list) = &self.allow else { return Ok(None) };
        let field = format!("backends.{name}.allow");
        if list.is_empty() {
            return Err((field, "an empty list admits nobody: remove the key to admit every user".into()));
        }
        let principals = list.iter().map(|entry| Principal::parse(entry)).collect::<Result<Vec<_>, _>>();
        principals.map(|principals| Some(Allow::new(principals))).map_err(|message| (field, message))
    }

    /// Validates the table of backend `name` into a spec; errors are `(field, message)`.
    pub fn validate(&self, name: &str) -> Result<BackendSpec, (String, String)> {
        let field = |f: &str| format!("backends.{name}.{f}");
        if let Some(foreign) = self.foreign_fields().first() {
            let kind = self.kind.as_str();
            return Err((field(foreign), format!("`{foreign}` is not a field of kind = \"{kind}\"")));
        }
        let launch = match self.kind {
            BackendKindName::Native => {
                return Ok(BackendSpec::Native { service: self.service.clone().unwrap_or_else(|| name.to_string()) });
            }
            BackendKindName::Process => {
                let command = self.command.as_ref().map(|c| c.0.clone()).unwrap_or_default();
                if command.is_empty() {
                    return Err((field("command"), "a process backend needs a command".into()));
                }
                LaunchSpec::Process(ProcessSpec {
                    command,
                    args: strings(&self.args),
                    cwd: self.cwd.as_ref().map(|c| PathBuf::from(&c.0)),
                    inherit_env: self.inherit_env.unwrap_or(false),
                })
            }
            BackendKindName::Docker => LaunchSpec::Docker(self.docker_spec(&field)?),
            BackendKindName::DockerExec => LaunchSpec::DockerExec(self.exec_spec(&field)?),
            BackendKindName::Http => {
                let spec = self.http_spec(&field)?;
                if self.transport != Some(Transport::Sse) {
                    return Ok(BackendSpec::Http(Box::new(spec)));
                }
                return Ok(BackendSpec::Stdio(Box::new(legacy_sse(spec))));
            }
        };
        let mut env: Vec<(String, String)> = self.env.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
        let mut secret_env = Vec::new();
        for (key, path) in self.env_files.iter().flatten() {
            env.push((key.clone(), read_secret_file(path, key).map_err(|message| (field("env_files"), message))?));
            secret_env.push(key.clone());
        }
        if self.required && self.start == Some(StartMode::Lazy) {
            return Err((
                field("start"),
                "`start = \"lazy\"` contradicts `required = true`: a required backend is started (or, per session, \
                 probed) when berth starts, so that /readyz means it answers; remove one of the two"
                    .into(),
            ));
        }
        let duration =
            |value: Option<ConfigDuration>, default: u64| value.map_or(Duration::from_secs(default), |d| d.0);
        let max_instances = self.max_instances.unwrap_or(64);
        if max_instances == 0 {
            return Err((field("max_instances"), "must be greater than zero".into()));
        }
        let replay_bytes = match self.replay_bytes.as_deref() {
            None => 1 << 20,
            Some(text) => parse_bytes(text)
                .and_then(|n| usize::try_from(n).map_err(|_| format!("`{text}` is too large")))
                .map_err(|message| (field("replay_bytes"), message))?,
        };
        Ok(BackendSpec::Stdio(Box::new(StdioSpec {
            launch,
            env,
            secret_env,
            sharing: self.sharing.unwrap_or_default(),
            start: self.start.unwrap_or_default(),
            request_timeout: duration(self.request_timeout, 600),
            startup_timeout: duration(self.startup_timeout, 60),
            idle_timeout: duration(self.idle_timeout, 900),
            max_instances,
            max_message_bytes: self.max_message_bytes.unwrap_or(16 << 20).max(1024),
            stop_grace: duration(self.stop_grace, 5),
            resume_window: duration(self.resume_window, 30),
            replay_events: self.replay_events.unwrap_or(256),
            replay_bytes,
            roots_result: roots_result(self.roots.as_deref().unwrap_or_default()),
        })))
    }

    fn exec_spec(&self, field: &dyn Fn(&str) -> String) -> Result<ExecSpec, (String, String)> {
        let container =
            self.container.clone().filter(|c| !c.is_empty()).ok_or_else(|| {
                (field("container"), "a docker-exec backend needs a container (its name or id)".into())
            })?;
        let command = self.command.as_ref().map(|c| c.0.clone()).unwrap_or_default();
        if command.is_empty() {
            return Err((field("command"), "a docker-exec backend needs a command".into()));
        }
        Ok(ExecSpec {
            container,
            command: std::iter::once(command).chain(strings(&self.args)).collect(),
            user: self.user.clone().filter(|u| !u.is_empty()),
            workdir: self.cwd.as_ref().map(|c| c.0.clone()),
        })
    }

    fn http_spec(&self, field: &dyn Fn(&str) -> String) -> Result<HttpSpec, (String, String)> {
        let text = self.url.as_ref().map(|url| url.0.as_str()).unwrap_or_default();
        if text.is_empty() {
            return Err((field("url"), "an http backend needs a url".into()));
        }
        let url: http::Uri = text.parse().map_err(|error| (field("url"), format!("`{text}` is not a URL: {error}")))?;
        let https = match url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err((field("url"), format!("`{text}` is not an http:// or https:// URL"))),
        };
        if url.host().is_none_or(str::is_empty) {
            return Err((field("url"), format!("`{text}` has no host")));
        }
        // Credentials in the URL would show wherever the URL does (logs, /api/config).
        if url.authority().is_some_and(|authority| authority.as_str().contains('@')) {
            return Err((field("url"), "the url holds credentials: give them as `basic` (or `bearer`) instead".into()));
        }
        if self.ca_file.is_some() && !https {
            return Err((field("ca_file"), format!("`ca_file` is for https:// URLs, and `{text}` is not one")));
        }
        let mut headers = Vec::new();
        let mut add = |origin: &str, name: &str, value: &str| -> Result<(), (String, String)> {
            let header = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| (field(origin), format!("`{name}` is not a header name")))?;
            if crate::remote::is_managed(&header) {
                return Err((field(origin), format!("berth sets `{name}` itself: it cannot be configured")));
            }
            if headers.iter().any(|(existing, _)| *existing == header) {
                return Err((field(origin), format!("`{name}` is given twice (headers, header_files, basic, bearer)")));
            }
            let mut value = http::HeaderValue::from_str(value)
                .map_err(|_| (field(origin), format!("the value of `{name}` is not a valid header value")))?;
            value.set_sensitive(true);
            headers.push((header, value));
            Ok(())
        };
        for (name, value) in self.headers.iter().flatten() {
            add("headers", name, value.0.expose())?;
        }
        for (name, path) in self.header_files.iter().flatten() {
            let value = read_secret_file(path, name).map_err(|message| (field("header_files"), message))?;
            add("header_files", name, &value)?;
        }
        if let Some(basic) = &self.basic {
            if basic.user.contains(':') {
                return Err((field("basic.user"), "a Basic user name cannot contain `:`".into()));
            }
            let pair = format!("{}:{}", basic.user.0, basic.password.0.expose());
            let value = format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pair));
            add("basic", "authorization", &value)?;
        }
        if let Some(token) = &self.bearer {
            add("bearer", "authorization", &format!("Bearer {}", token.0.expose()))?;
        }
        let duration =
            |value: Option<ConfigDuration>, default: u64| value.map_or(Duration::from_secs(default), |d| d.0);
        let probe_interval = duration(self.probe_interval, 5);
        if probe_interval < Duration::from_millis(100) {
            return Err((field("probe_interval"), "must be at least 100ms".into()));
        }
        Ok(HttpSpec {
            url,
            headers,
            ca_file: self.ca_file.as_ref().map(|path| PathBuf::from(&path.0)),
            connect_timeout: duration(self.connect_timeout, 10),
            request_timeout: duration(self.request_timeout, 600),
            probe_interval,
        })
    }

    fn docker_spec(&self, field: &dyn Fn(&str) -> String) -> Result<DockerSpec, (String, String)> {
        let image = self
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| (field("image"), "a docker backend needs an image".into()))?;
        let memory = self.memory.as_deref().unwrap_or("512m");
        let memory_bytes = parse_bytes(memory).map_err(|message| (field("memory"), message))?;
        let nano_cpus = nano_cpus(self.cpus.unwrap_or(1.0)).map_err(|message| (field("cpus"), message))?;
        let mut binds = Vec::new();
        for volume in self.volumes.iter().flatten() {
            let parts: Vec<&str> = volume.0.split(':').collect();
            let bind = match parts.as_slice() {
                [host, container] => format!("{host}:{container}:ro"),
                [host, container, mode @ ("ro" | "rw")] => format!("{host}:{container}:{mode}"),
                _ => {
                    return Err((
                        field("volumes"),
                        format!("`{}` is not \"host:container\" or \"host:container:rw\"", volume.0),
                    ));
                }
            };
            if !parts[1].starts_with('/') {
                return Err((field("volumes"), format!("the container path in `{}` must be absolute", volume.0)));
            }
            binds.push(bind);
        }
        let user = match self.user.as_deref() {
            None => Some("65534:65534".to_string()),
            Some("") => None,
            Some(user) => Some(user.to_string()),
        };
        Ok(DockerSpec {
            image,
            pull_if_missing: self.image_pull.unwrap_or_default() == ImagePull::IfMissing,
            command: self.args.as_ref().map(|_| strings(&self.args)),
            entrypoint: self.entrypoint.clone(),
            workdir: self.cwd.as_ref().map(|c| c.0.clone()),
            network_mode: self.network_mode.clone().unwrap_or_else(|| "none".into()),
            cap_drop: self.cap_drop.clone().unwrap_or_else(|| vec!["ALL".into()]),
            cap_add: self.cap_add.clone().unwrap_or_default(),
            read_only: self.read_only.unwrap_or(true),
            tmpfs: self.tmpfs.clone().unwrap_or_else(|| vec!["/tmp".into()]),
            memory_bytes,
            nano_cpus,
            pids_limit: self.pids_limit.unwrap_or(256),
            user,
            init: self.init.unwrap_or(true),
            no_new_privileges: self.no_new_privileges.unwrap_or(true),
            binds,
        })
    }
}

/// A legacy HTTP+SSE upstream as a stdio backend: each client session gets a connection of its
/// own, as a legacy server expects one client per connection; the stdio defaults otherwise.
fn legacy_sse(spec: HttpSpec) -> StdioSpec {
    StdioSpec {
        request_timeout: spec.request_timeout,
        // The connection and the initialize handshake; requests wait this long for a restart.
        startup_timeout: spec.connect_timeout + Duration::from_secs(10),
        launch: LaunchSpec::Sse(spec),
        env: Vec::new(),
        secret_env: Vec::new(),
        sharing: Sharing::PerSession,
        start: StartMode::Lazy,
        idle_timeout: Duration::from_secs(900),
        max_instances: 64,
        max_message_bytes: 16 << 20,
        stop_grace: Duration::from_secs(5),
        resume_window: Duration::from_secs(30),
        replay_events: 256,
        replay_bytes: 1 << 20,
        roots_result: roots_result(&[]),
    }
}

/// The contents of the secret file at `path` (for `key`), without its trailing line break.
fn read_secret_file(path: &EnvString, key: &str) -> Result<String, String> {
    let value =
        std::fs::read_to_string(&path.0).map_err(|error| format!("cannot read `{}` for {key}: {error}", path.0))?;
    Ok(value.trim_end_matches(['\r', '\n']).to_string())
}

fn strings(values: &Option<Vec<EnvString>>) -> Vec<String> {
    values.iter().flatten().map(|v| v.0.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<BackendSpec, String> {
        let config: BackendConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate("x").map_err(|(field, message)| format!("{field}: {message}"))
    }

    #[test]
    fn kinds_and_their_fields() {
        let table = [
            ("kind = \"native\"", Ok("native")),
            (
                "kind = \"native\"\ncommand = \"x\"",
                Err("backends.x.command: `command` is not a field of kind = \"native\""),
            ),
            ("kind = \"process\"", Err("backends.x.command: a process backend needs a command")),
            ("kind = \"process\"\ncommand = \"node\"\nargs = [\"a\"]\nsharing = \"per-session\"", Ok("process")),
            (
                "kind = \"process\"\ncommand = \"node\"\nimage = \"x\"",
                Err("backends.x.image: `image` is not a field of kind = \"process\""),
            ),
            ("kind = \"docker\"", Err("backends.x.image: a docker backend needs an image")),
            (
                "kind = \"docker\"\nimage = \"i\"\nmemory = \"lots\"",
                Err("backends.x.memory: `lots` is not a size such as \"512m\" or \"1g\""),
            ),
            (
                "kind = \"docker\"\nimage = \"i\"\nvolumes = [\"/a:b\"]",
                Err("backends.x.volumes: the container path in `/a:b` must be absolute"),
            ),
            ("kind = \"docker\"\nimage = \"i\"\nvolumes = [\"/srv:/data\", \"/w:/w:rw\"]", Ok("docker")),
            (
                "kind = \"process\"\ncommand = \"n\"\nmax_instances = 0",
                Err("backends.x.max_instances: must be greater than zero"),
            ),
            ("kind = \"process\"\ncommand = \"n\"\ninherit_env = true", Ok("process")),
            (
                "kind = \"docker\"\nimage = \"i\"\ninherit_env = true",
                Err("backends.x.inherit_env: `inherit_env` is not a field of kind = \"docker\""),
            ),
            ("kind = \"process\"\ncommand = \"n\"\nrequired = true\nstart = \"eager\"", Ok("process")),
            ("kind = \"http\"", Err("backends.x.url: an http backend needs a url")),
            ("kind = \"http\"\nurl = \"http://127.0.0.1:8000/mcp\"\nrequest_timeout = \"30s\"", Ok("http")),
            (
                "kind = \"http\"\nurl = \"ftp://h/mcp\"",
                Err("backends.x.url: `ftp://h/mcp` is not an http:// or https:// URL"),
            ),
            ("kind = \"http\"\nurl = \"/mcp\"", Err("backends.x.url: `/mcp` is not an http:// or https:// URL")),
            (
                "kind = \"http\"\nurl = \"https://u:pw@h/mcp\"",
                Err("backends.x.url: the url holds credentials: give them as `basic` (or `bearer`) instead"),
            ),
            (
                "kind = \"http\"\nurl = \"http://h/mcp\"\ncommand = \"x\"",
                Err("backends.x.command: `command` is not a field of kind = \"http\""),
            ),
            (
                "kind = \"http\"\nurl = \"http://h/mcp\"\nsharing = \"shared\"",
                Err("backends.x.sharing: `sharing` is not a field of kind = \"http\""),
            ),
            (
                "kind = \"process\"\ncommand = \"n\"\nurl = \"http://h/mcp\"",
                Err("backends.x.url: `url` is not a field of kind = \"process\""),
            ),
            (
                "kind = \"native\"\nrequest_timeout = \"1s\"",
                Err("backends.x.request_timeout: `request_timeout` is not a field of kind = \"native\""),
            ),
            ("kind = \"http\"\nurl = \"http://h/sse\"\ntransport = \"sse\"", Ok("sse")),
            ("kind = \"http\"\nurl = \"http://h/mcp\"\ntransport = \"streamable-http\"", Ok("http")),
            (
                "kind = \"http\"\nurl = \"http://h/mcp\"\nca_file = \"/ca.pem\"",
                Err("backends.x.ca_file: `ca_file` is for https:// URLs, and `http://h/mcp` is not one"),
            ),
            (
                "kind = \"http\"\nurl = \"http://h/mcp\"\nbearer = \"t\"\nbasic = { user = \"u\", password = \"p\" }",
                Err("backends.x.bearer: `authorization` is given twice (headers, header_files, basic, bearer)"),
            ),
            (
                "kind = \"http\"\nurl = \"http://h/mcp\"\nheaders = { Host = \"evil\" }",
                Err("backends.x.headers: berth sets `Host` itself: it cannot be configured"),
            ),
            (
                "kind = \"http\"\nurl = \"http://h/mcp\"\nheaders = { \"bad name\" = \"v\" }",
                Err("backends.x.headers: `bad name` is not a header name"),
            ),
            (
                "kind = \"http\"\nurl = \"http://h/mcp\"\nbasic = { user = \"a:b\", password = \"p\" }",
                Err("backends.x.basic.user: a Basic user name cannot contain `:`"),
            ),
            (
                "kind = \"http\"\nurl = \"http://h/mcp\"\nprobe_interval = \"10ms\"",
                Err("backends.x.probe_interval: must be at least 100ms"),
            ),
            ("kind = \"docker\"\nimage = \"i\"\nrequired = true\nsharing = \"per-session\"", Ok("docker")),
            (
                "kind = \"process\"\ncommand = \"n\"\nrequired = true\nstart = \"lazy\"",
                Err(
                    "backends.x.start: `start = \"lazy\"` contradicts `required = true`: a required backend is started \
                     (or, per session, probed) when berth starts, so that /readyz means it answers; remove one of the two",
                ),
            ),
            (
                "kind = \"docker-exec\"\ncontainer = \"tools\"\ncommand = \"npx\"\nargs = [\"-y\", \"s\"]\n\
                 user = \"node\"\ncwd = \"/w\"\nenv = { A = \"1\" }\nsharing = \"per-session\"\nrequired = true",
                Ok("docker-exec"),
            ),
            (
                "kind = \"docker-exec\"\ncommand = \"npx\"",
                Err("backends.x.container: a docker-exec backend needs a container (its name or id)"),
            ),
            (
                "kind = \"docker-exec\"\ncontainer = \"\"\ncommand = \"npx\"",
                Err("backends.x.container: a docker-exec backend needs a container (its name or id)"),
            ),
            (
                "kind = \"docker-exec\"\ncontainer = \"c\"",
                Err("backends.x.command: a docker-exec backend needs a command"),
            ),
            (
                "kind = \"docker-exec\"\ncontainer = \"c\"\ncommand = \"n\"\nimage = \"i\"",
                Err("backends.x.image: `image` is not a field of kind = \"docker-exec\""),
            ),
            (
                "kind = \"docker-exec\"\ncontainer = \"c\"\ncommand = \"n\"\nnetwork_mode = \"host\"",
                Err("backends.x.network_mode: `network_mode` is not a field of kind = \"docker-exec\""),
            ),
            (
                "kind = \"docker-exec\"\ncontainer = \"c\"\ncommand = \"n\"\ninherit_env = true",
                Err("backends.x.inherit_env: `inherit_env` is not a field of kind = \"docker-exec\""),
            ),
            (
                "kind = \"docker-exec\"\ncontainer = \"c\"\ncommand = \"n\"\nservice = \"s\"",
                Err("backends.x.service: `service` is not a field of kind = \"docker-exec\""),
            ),
            (
                "kind = \"docker\"\nimage = \"i\"\ncontainer = \"c\"",
                Err("backends.x.container: `container` is not a field of kind = \"docker\""),
            ),
            (
                "kind = \"docker\"\nimage = \"i\"\ncommand = \"c\"",
                Err("backends.x.command: `command` is not a field of kind = \"docker\""),
            ),
            (
                "kind = \"process\"\ncommand = \"n\"\ncontainer = \"c\"",
                Err("backends.x.container: `container` is not a field of kind = \"process\""),
            ),
            (
                "kind = \"process\"\ncommand = \"n\"\nuser = \"u\"",
                Err("backends.x.user: `user` is not a field of kind = \"process\""),
            ),
            (
                "kind = \"native\"\ncontainer = \"c\"",
                Err("backends.x.container: `container` is not a field of kind = \"native\""),
            ),
        ];
        for (text, expected) in table {
            let got = validate(text).map(|spec| match spec {
                BackendSpec::Native { .. } => "native",
                BackendSpec::Http(_) => "http",
                BackendSpec::Stdio(stdio) => match stdio.launch {
                    LaunchSpec::Sse(_) => "sse",
                    ref launch => launch.kind(),
                },
            });
            assert_eq!(got.as_deref().map_err(String::as_str), expected, "{text}");
        }
    }

    #[test]
    fn secrets_from_files_never_show_in_debug() {
        let dir = std::env::temp_dir().join(format!("berth-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cr3t-value\n").unwrap();
        let text = format!(
            "kind = \"process\"\ncommand = \"x\"\nenv = {{ PLAIN = \"visible\" }}\nenv_files = {{ TOKEN = \"{}\" }}",
            file.display()
        );
        let BackendSpec::Stdio(stdio) = validate(&text).unwrap() else { panic!("not stdio") };
        assert!(stdio.env.contains(&("TOKEN".to_string(), "s3cr3t-value".to_string())), "the server still gets it");
        let shown = format!("{stdio:?}");
        assert!(
            !shown.contains("s3cr3t-value") && shown.contains("[redacted]") && shown.contains("visible"),
            "{shown}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn docker_exec_runs_command_and_args_as_the_containers_user_by_default() {
        let BackendSpec::Stdio(stdio) =
            validate("kind = \"docker-exec\"\ncontainer = \"tools\"\ncommand = \"npx\"\nargs = [\"-y\", \"srv\"]")
                .unwrap()
        else {
            panic!("not stdio")
        };
        let LaunchSpec::DockerExec(spec) = stdio.launch else { panic!("not docker-exec") };
        assert_eq!(spec.container, "tools");
        assert_eq!(spec.command, ["npx", "-y", "srv"]);
        assert_eq!((spec.user, spec.workdir), (None, None));
        assert_eq!(stdio.sharing, Sharing::Shared);
        let text = "kind = \"docker-exec\"\ncontainer = \"t\"\ncommand = \"n\"\nuser = \"1000:1000\"\ncwd = \"/w\"";
        let BackendSpec::Stdio(stdio) = validate(text).unwrap() else { panic!("not stdio") };
        let LaunchSpec::DockerExec(spec) = stdio.launch else { panic!("not docker-exec") };
        assert_eq!((spec.user.as_deref(), spec.workdir.as_deref()), (Some("1000:1000"), Some("/w")));
    }

    #[test]
    fn http_credentials_become_sensitive_headers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "file-s3cret\n").unwrap();
        let text = format!(
            "kind = \"http\"\nurl = \"https://mcp.example.com/mcp\"\nbasic = {{ user = \"berth\", password = \"pw\" }}\n\
             headers = {{ X-Team = \"blue\" }}\nheader_files = {{ X-Api-Key = \"{}\" }}",
            file.display()
        );
        let BackendSpec::Http(spec) = validate(&text).unwrap() else { panic!("not http") };
        let headers: Vec<(String, String)> =
            spec.headers.iter().map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string())).collect();
        assert_eq!(
            headers,
            [
                ("x-team".to_string(), "blue".to_string()),
                ("x-api-key".to_string(), "file-s3cret".to_string()),
                ("authorization".to_string(), "Basic YmVydGg6cHc=".to_string()),
            ]
        );
        assert!(spec.headers.iter().all(|(_, value)| value.is_sensitive()));
        let shown = format!("{spec:?}");
        assert!(!shown.contains("file-s3cret") && !shown.contains("YmVydGg6cHc") && !shown.contains("blue"), "{shown}");
        assert_eq!(
            (spec.connect_timeout, spec.request_timeout, spec.probe_interval),
            (Duration::from_secs(10), Duration::from_secs(600), Duration::from_secs(5))
        );
        // What GET /api/config shows of the table: names, never values.
        let config: BackendConfig = toml::from_str(&text).unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert!(!json.contains("blue") && !json.contains("\"pw\"") && json.contains("X-Team"), "{json}");
        let bearer: BackendConfig =
            toml::from_str("kind = \"http\"\nurl = \"http://h/mcp\"\nbearer = \"tok\"").unwrap();
        let BackendSpec::Http(spec) = bearer.validate("x").unwrap() else { panic!("not http") };
        assert_eq!(spec.headers[0].1, "Bearer tok");
        assert!(!serde_json::to_string(&bearer).unwrap().contains("tok\""));
    }

    #[test]
    fn docker_defaults_are_hardened() {
        let BackendSpec::Stdio(stdio) =
            validate("kind = \"docker\"\nimage = \"i\"\nvolumes = [\"/srv:/data\"]").unwrap()
        else {
            panic!("not stdio")
        };
        let LaunchSpec::Docker(spec) = stdio.launch else { panic!("not docker") };
        assert_eq!(spec.network_mode, "none");
        assert_eq!(spec.cap_drop, ["ALL"]);
        assert!(spec.read_only && spec.init && spec.no_new_privileges);
        assert_eq!(spec.tmpfs, ["/tmp"]);
        assert_eq!(spec.memory_bytes, 512 << 20);
        assert_eq!(spec.user.as_deref(), Some("65534:65534"));
        assert_eq!(spec.binds, ["/srv:/data:ro"]);
    }

    #[test]
    fn sizes() {
        let table: &[(&str, Result<i64, &str>)] = &[
            ("512m", Ok(512 << 20)),
            ("1G", Ok(1 << 30)),
            (" 64k ", Ok(64 << 10)),
            ("4096", Ok(4096)),
            // The largest limit that fits Docker's i64, in gigabytes.
            ("8589934591g", Ok(8_589_934_591 << 30)),
            ("9223372036854775807", Ok(i64::MAX)),
            ("0", Err("is not a size")),
            ("-1g", Err("is not a size")),
            ("x", Err("is not a size")),
            ("", Err("is not a size")),
            // 9999999999 × 2³⁰ overflows i64: a panic in debug builds, a negative limit in release.
            ("9999999999g", Err("is more than")),
            ("8589934592g", Err("is more than")),
            ("9007199254740992k", Err("is more than")),
            ("9223372036854775808", Err("is more than")),
        ];
        for (text, expected) in table {
            match (parse_bytes(text), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{text:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{text:?} gave {got}"),
                (got, want) => panic!("{text:?} gave {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn cpus() {
        let table: &[(f64, Result<i64, &str>)] = &[
            (1.0, Ok(1_000_000_000)),
            (0.5, Ok(500_000_000)),
            (0.3, Ok(300_000_000)),
            (1024.0, Ok(1_024_000_000_000)),
            (1e-9, Ok(1)),
            // Less than a billionth of a core became NanoCpus = 0, which Docker reads as no
            // limit at all.
            (1e-12, Err("at least")),
            (0.0, Err("positive")),
            (-1.0, Err("positive")),
            (1025.0, Err("positive")),
            (f64::NAN, Err("positive")),
            (f64::INFINITY, Err("positive")),
        ];
        for (cpus, expected) in table {
            match (nano_cpus(*cpus), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{cpus}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{cpus} gave {got}"),
                (got, want) => panic!("{cpus} gave {got:?}, expected {want:?}"),
            }
        }
    }
}
