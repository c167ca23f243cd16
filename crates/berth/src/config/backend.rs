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

use super::values::{ConfigDuration, EnvString, allow_list};
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
    /// `native`, `process` or `docker`.
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

    /// process: the program to run.
    pub command: Option<EnvString>,
    /// process: pass berth's whole environment on (minus `BERTH_*`) instead of only `PATH`,
    /// `HOME`, `TMPDIR`, `TZ` and the locale (default false). Containers never inherit it.
    pub inherit_env: Option<bool>,
    /// process: its arguments; docker: the container's command (overrides the image's CMD).
    pub args: Option<Vec<EnvString>>,
    /// process: the working directory; docker: the container's working directory.
    pub cwd: Option<EnvString>,

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
    /// restart the clock (default 10m).
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
}

/// What runs the stdio server.
#[derive(Debug, Clone, PartialEq)]
pub enum LaunchSpec {
    /// A local process.
    Process(ProcessSpec),
    /// A Docker container.
    Docker(DockerSpec),
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
        let process = [("command", self.command.is_some()), ("inherit_env", self.inherit_env.is_some())];
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
            ("user", self.user.is_some()),
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
            ("request_timeout", self.request_timeout.is_some()),
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
        let foreign: Vec<(&'static str, bool)> = match self.kind {
            BackendKindName::Native => process.iter().chain(&docker).chain(&stdio).copied().collect(),
            BackendKindName::Process => native.iter().chain(&docker).copied().collect(),
            BackendKindName::Docker => native.iter().chain(&process).copied().collect(),
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
            let kind = format!("{:?}", self.kind).to_ascii_lowercase();
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
        };
        let mut env: Vec<(String, String)> = self.env.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
        let mut secret_env = Vec::new();
        for (key, path) in self.env_files.iter().flatten() {
            let value = std::fs::read_to_string(&path.0)
                .map_err(|error| (field("env_files"), format!("cannot read `{}` for {key}: {error}", path.0)))?;
            env.push((key.clone(), value.trim_end_matches(['\r', '\n']).to_string()));
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
            ("kind = \"docker\"\nimage = \"i\"\nrequired = true\nsharing = \"per-session\"", Ok("docker")),
            (
                "kind = \"process\"\ncommand = \"n\"\nrequired = true\nstart = \"lazy\"",
                Err(
                    "backends.x.start: `start = \"lazy\"` contradicts `required = true`: a required backend is started \
                     (or, per session, probed) when berth starts, so that /readyz means it answers; remove one of the two",
                ),
            ),
        ];
        for (text, expected) in table {
            let got = validate(text).map(|spec| match spec {
                BackendSpec::Native { .. } => "native",
                BackendSpec::Stdio(stdio) => match stdio.launch {
                    LaunchSpec::Process(_) => "process",
                    LaunchSpec::Docker(_) => "docker",
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
