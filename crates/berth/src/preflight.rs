//! Preflight: what `berth check` verifies beyond the file itself, and what `berth serve` logs
//! as warnings at start-up, so that a typo or a missing install shows before the first call
//! instead of at it.
//!
//! Only what can be seen without starting anything is checked:
//! - a process backend's `command` (looked up on the `PATH` the server gets, which its `env`
//!   may set) and its `cwd`;
//! - a docker backend's `image` (present on the engine, or known to its registry when
//!   `image_pull = "if-missing"`) and the sources of its bind mounts, which are looked for only
//!   when the engine shares berth's machine: they are paths on the engine's host, and Docker
//!   creates a missing one as an empty directory instead of failing.
//!
//! `env_files` need no check here: they are read while the file is validated, so an unreadable
//! one is a configuration error already. A Docker engine that does not answer is a warning, not
//! a problem: `serve` waits for it and reconnects, and `check` may run where there is none.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    config::{BackendSpec, Config, DockerSpec, ExecSpec, LaunchSpec, ProcessSpec},
    gateway::EnvLookup,
};

/// The longest berth waits for one answer of the Docker engine or of a registry.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(10);

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// The backend would fail (or run wrongly) at its first call: `check` fails.
    Problem,
    /// Worth knowing, and nothing is wrong with a backend because of it.
    Warning,
    /// Something that was not checked, and why.
    Note,
}

/// One thing preflight found, with the file, line and field it is about.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    /// How much it matters.
    pub(crate) severity: Severity,
    /// `berth.toml:12: `backends.fs.image`: ...`, as configuration errors are written.
    text: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Collects findings about one configuration.
struct Findings<'a> {
    config: &'a Config,
    found: Vec<Finding>,
}

impl Findings<'_> {
    /// A finding about `field`; with `backend`, its line is that of the backend's table.
    fn add(&mut self, severity: Severity, backend: Option<&str>, field: &str, message: impl Into<String>) {
        let span = backend.and_then(|name| self.config.backends.get(name)).map(|table| table.span());
        let field = match backend {
            Some(name) => format!("backends.{name}.{field}"),
            None => field.to_string(),
        };
        let text = self.config.source.invalid(span, field, message).to_string();
        self.found.push(Finding { severity, text });
    }
}

/// Checks `config` (already validated); `env` is berth's own environment.
pub(crate) async fn run(config: &Config, env: EnvLookup<'_>) -> Vec<Finding> {
    let mut findings = Findings { config, found: Vec::new() };
    if config.validated.backends.is_empty() {
        findings.add(Severity::Warning, None, "backends", "no backends: every MCP route answers 404");
    }
    let mut docker = Vec::new();
    let mut execs = Vec::new();
    for (name, spec) in &config.validated.backends {
        let BackendSpec::Stdio(stdio) = spec else { continue };
        match &stdio.launch {
            LaunchSpec::Process(process) => check_process(&mut findings, name, process, &stdio.env, env),
            LaunchSpec::Docker(spec) => docker.push((name.as_str(), spec)),
            LaunchSpec::DockerExec(spec) => execs.push((name.as_str(), spec)),
            // A remote server: nothing on this machine to check.
            LaunchSpec::Sse(_) => {}
        }
    }
    if !docker.is_empty() {
        check_docker(&mut findings, &docker).await;
    }
    if !execs.is_empty() {
        check_containers(&mut findings, &execs).await;
    }
    findings.found
}

/// Why `path` cannot be executed, if it cannot.
fn not_executable(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some("does not exist".into()),
        Err(error) => Some(format!("cannot be read: {error}")),
        Ok(meta) if !meta.is_file() => Some("is not a file".into()),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Some("is not executable (chmod +x)".into()),
        Ok(_) => None,
    }
}

/// What to install for the launchers MCP servers are usually started with.
fn install_hint(command: &str) -> &'static str {
    match command {
        "uvx" | "uv" => ": install uv (https://docs.astral.sh/uv/), which provides uvx",
        "npx" | "npm" | "node" => ": install Node.js (https://nodejs.org/), which provides npx",
        "docker" => ": install the Docker CLI, or use kind = \"docker\"",
        "python" | "python3" | "pip" => ": install Python 3",
        _ => "",
    }
}

fn check_process(
    findings: &mut Findings<'_>,
    name: &str,
    process: &ProcessSpec,
    server_env: &[(String, String)],
    env: EnvLookup<'_>,
) {
    let cwd = process.cwd.as_deref();
    if let Some(dir) = cwd
        && !dir.is_dir()
    {
        let message = format!("the working directory `{}` does not exist or is not a directory", dir.display());
        findings.add(Severity::Problem, Some(name), "cwd", message);
    }
    let command = process.command.as_str();
    if command.contains('/') {
        // A relative path is resolved in the server's working directory, where it runs.
        let path = match cwd {
            Some(dir) if Path::new(command).is_relative() => dir.join(command),
            _ => PathBuf::from(command),
        };
        if let Some(why) = not_executable(&path) {
            findings.add(Severity::Problem, Some(name), "command", format!("`{}` {why}", path.display()));
        }
        return;
    }
    // The server's own PATH (its `env` may set one, the last value wins), else berth's, else
    // the C library's default, as execvp looks.
    let search = server_env
        .iter()
        .rev()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.clone())
        .or_else(|| env("PATH"))
        .unwrap_or_else(|| "/bin:/usr/bin".into());
    let found = std::env::split_paths(&search).any(|dir| not_executable(&dir.join(command)).is_none());
    if !found {
        let message = format!("`{command}` is not found on PATH ({search}){}", install_hint(command));
        findings.add(Severity::Problem, Some(name), "command", message);
    }
}

/// This machine's host name, as the engine would report it if it ran here.
fn own_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

async fn check_docker(findings: &mut Findings<'_>, backends: &[(&str, &DockerSpec)]) {
    let names: Vec<&str> = backends.iter().map(|(name, _)| *name).collect();
    let names = names.join(", ");
    let engine = match tokio::time::timeout(DOCKER_TIMEOUT, berth_docker::Engine::connect()).await {
        Ok(Ok(engine)) => engine,
        Ok(Err(error)) => {
            let message = format!("{error}: the images and volumes of backends {names} were not checked");
            findings.add(Severity::Warning, None, "DOCKER_HOST", message);
            return;
        }
        Err(_) => {
            let message = format!(
                "the Docker engine did not answer within {DOCKER_TIMEOUT:?}: the images and volumes of backends {names} \
                 were not checked"
            );
            findings.add(Severity::Warning, None, "DOCKER_HOST", message);
            return;
        }
    };
    // Bind-mount sources are paths on the engine's host: berth can look for them only when it
    // shares that filesystem (not when it runs in a container the host's socket is shared into).
    let engine_host = match tokio::time::timeout(DOCKER_TIMEOUT, engine.host_name()).await {
        Ok(Ok(name)) => Some(name),
        _ => None,
    };
    let shared_filesystem = engine.is_local() && engine_host.is_some() && engine_host == own_host_name();
    let mut unchecked_volumes = Vec::new();
    for (name, spec) in backends {
        check_image(findings, name, spec, &engine).await;
        for bind in &spec.binds {
            let source = bind.split(':').next().unwrap_or_default();
            // Anything else is the name of a Docker volume, which the engine creates on demand.
            if !source.starts_with('/') {
                continue;
            }
            if !shared_filesystem {
                unchecked_volumes.push(*name);
            } else if !Path::new(source).exists() {
                let message = format!(
                    "the source `{source}` of the bind mount `{bind}` does not exist: Docker would mount an empty \
                     directory it creates there"
                );
                findings.add(Severity::Problem, Some(name), "volumes", message);
            }
        }
    }
    unchecked_volumes.dedup();
    if !unchecked_volumes.is_empty() {
        let message = format!(
            "the bind-mount sources of backends {} were not checked: the Docker engine runs on `{}`, not here, and \
             they are paths there",
            unchecked_volumes.join(", "),
            engine_host.as_deref().unwrap_or("another machine")
        );
        findings.add(Severity::Note, None, "DOCKER_HOST", message);
    }
}

/// The containers of docker-exec backends: one that is missing or stopped is a warning, not a
/// problem, since the backend becomes ready by itself once the container runs.
async fn check_containers(findings: &mut Findings<'_>, backends: &[(&str, &ExecSpec)]) {
    let Ok(Ok(engine)) = tokio::time::timeout(DOCKER_TIMEOUT, berth_docker::Engine::connect()).await else {
        let names: Vec<&str> = backends.iter().map(|(name, _)| *name).collect();
        let message = format!(
            "the Docker engine does not answer: the containers of backends {} were not checked",
            names.join(", ")
        );
        findings.add(Severity::Warning, None, "DOCKER_HOST", message);
        return;
    };
    for (name, spec) in backends {
        let container = spec.container.clone();
        let message = match tokio::time::timeout(DOCKER_TIMEOUT, engine.container_state(&container)).await {
            Ok(Ok(berth_docker::ContainerState::Running)) => continue,
            Ok(Ok(berth_docker::ContainerState::NotRunning(status))) => {
                berth_docker::DockerError::ContainerNotRunning { container, status }.to_string()
            }
            Ok(Ok(berth_docker::ContainerState::Missing)) => {
                berth_docker::DockerError::ContainerMissing { container }.to_string()
            }
            Ok(Err(error)) => format!("cannot look at container {container:?}: {error}"),
            Err(_) => {
                format!("the Docker engine did not say within {DOCKER_TIMEOUT:?} whether container {container:?} runs")
            }
        };
        let message = format!("{message}; the backend is not ready until it runs");
        findings.add(Severity::Warning, Some(name), "container", message);
    }
}

async fn check_image(findings: &mut Findings<'_>, name: &str, spec: &DockerSpec, engine: &berth_docker::Engine) {
    let image = spec.image.as_str();
    let present = match tokio::time::timeout(DOCKER_TIMEOUT, engine.image_exists(image)).await {
        Ok(Ok(present)) => present,
        Ok(Err(error)) => {
            findings.add(Severity::Warning, Some(name), "image", format!("image {image:?} was not checked: {error}"));
            return;
        }
        Err(_) => {
            let message =
                format!("image {image:?} was not checked: the engine did not answer within {DOCKER_TIMEOUT:?}");
            findings.add(Severity::Warning, Some(name), "image", message);
            return;
        }
    };
    if present {
        return;
    }
    if !spec.pull_if_missing {
        let message = berth_docker::DockerError::ImageMissing { image: image.to_string() }.to_string();
        findings.add(Severity::Problem, Some(name), "image", message);
        return;
    }
    match tokio::time::timeout(DOCKER_TIMEOUT, engine.registry_has_image(image)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            let message =
                format!("image {image:?} is not present, and image_pull = \"if-missing\" cannot pull it: {error}");
            findings.add(Severity::Problem, Some(name), "image", message);
        }
        Err(_) => {
            let message =
                format!("image {image:?} is not present, and its registry did not answer within {DOCKER_TIMEOUT:?}");
            findings.add(Severity::Warning, Some(name), "image", message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The findings for one process backend `x` written as `table`, with berth's `PATH`.
    async fn findings(table: &str, path: &Path) -> Vec<String> {
        let text = format!("auth = \"none\"\n[backends.x]\nkind = \"process\"\n{table}\n");
        let config = Config::parse(&text, Some(Path::new("berth.toml"))).unwrap();
        let path = path.display().to_string();
        let env = |name: &str| (name == "PATH").then(|| path.clone());
        run(&config, &env).await.into_iter().map(|finding| format!("{:?}: {finding}", finding.severity)).collect()
    }

    #[tokio::test]
    async fn commands_are_found_where_the_server_would_look() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for (name, mode) in [("server", 0o755), ("data", 0o644)] {
            std::fs::write(bin.join(name), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let (dir, bin) = (dir.path().display().to_string(), bin.display().to_string());
        let problem = "Problem: berth.toml:2: `backends.x.";
        let table: Vec<(String, Option<String>)> = vec![
            ("command = \"server\"".into(), None),
            (format!("command = \"{bin}/server\""), None),
            (format!("command = \"bin/server\"\ncwd = \"{dir}\""), None),
            (
                "command = \"missing\"".into(),
                Some(format!("{problem}command`: `missing` is not found on PATH ({bin})")),
            ),
            ("command = \"data\"".into(), Some(format!("{problem}command`: `data` is not found on PATH"))),
            (
                "command = \"uvx\"".into(),
                Some(format!("{problem}command`: `uvx` is not found on PATH ({bin}): install uv")),
            ),
            (
                "command = \"npx\"".into(),
                Some(format!("{problem}command`: `npx` is not found on PATH ({bin}): install Node.js")),
            ),
            (format!("command = \"{bin}/data\""), Some(format!("{problem}command`: `{bin}/data` is not executable"))),
            (
                format!("command = \"{bin}/nothing\""),
                Some(format!("{problem}command`: `{bin}/nothing` does not exist")),
            ),
            (format!("command = \"{dir}\""), Some(format!("{problem}command`: `{dir}` is not a file"))),
            (
                "command = \"server\"\ncwd = \"/nonexistent/dir\"".into(),
                Some(format!("{problem}cwd`: the working directory `/nonexistent/dir` does not exist")),
            ),
            // The server's own PATH is where it is looked for.
            (
                "command = \"server\"\nenv = { PATH = \"/nonexistent/bin\" }".into(),
                Some(format!("{problem}command`: `server` is not found on PATH (/nonexistent/bin)")),
            ),
        ];
        for (table, expected) in table {
            let found = findings(&table, Path::new(&bin)).await;
            match expected {
                None => assert!(found.is_empty(), "{table}: {found:?}"),
                Some(expected) => {
                    assert_eq!(found.len(), 1, "{table}: {found:?}");
                    assert!(found[0].starts_with(&expected), "{table}: {found:?}");
                }
            }
        }
    }

    #[tokio::test]
    async fn no_backends_is_a_warning() {
        let config = Config::parse("auth = \"none\"\n", Some(Path::new("berth.toml"))).unwrap();
        let found: Vec<String> = run(&config, &|_| None).await.iter().map(ToString::to_string).collect();
        assert_eq!(found, ["berth.toml: `backends`: no backends: every MCP route answers 404"]);
    }
}
