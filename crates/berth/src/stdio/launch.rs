//! Starting one instance of a stdio server, as a process, a container, an exec in a running
//! container or a connection to a legacy HTTP+SSE server, and stopping it.
//!
//! Every kind hands the relay the same thing: a writer for the server's stdin, chunk streams of
//! its stdout and stderr, and a handle that reports the exit and stops the instance.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::io::AsyncWrite;

use super::docker_hub::DockerHub;
use super::process::{ProcessHandle, spawn_process};
use crate::{
    config::{LaunchSpec, StdioSpec},
    remote::{LegacySse, SseRun},
};

/// How often a docker-exec backend's container is looked at.
const CONTAINER_CHECK: Duration = Duration::from_secs(2);

/// A started instance.
pub(crate) struct Launched {
    /// The server's stdin.
    pub(crate) stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// The server's stdout, in chunks as they arrive.
    pub(crate) stdout: BoxStream<'static, io::Result<Bytes>>,
    /// The server's stderr, in chunks as they arrive.
    pub(crate) stderr: BoxStream<'static, io::Result<Bytes>>,
    /// Exit and stop.
    pub(crate) handle: RunHandle,
}

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    /// The process could not be spawned.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// The OS error.
        source: io::Error,
    },
    /// The container could not be created or attached.
    #[error("{0}")]
    Docker(#[from] berth_docker::DockerError),
    /// The legacy HTTP+SSE server could not be connected to.
    #[error("{0}")]
    Sse(String),
}

/// The running instance.
pub(crate) enum RunHandle {
    /// A process group.
    Process(ProcessHandle),
    /// A container.
    Docker(berth_docker::Container),
    /// A process in a running container.
    Exec(berth_docker::Exec),
    /// A connection to a legacy HTTP+SSE server.
    Sse(SseRun),
}

impl RunHandle {
    /// The process id, for a process.
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Self::Process(process) => Some(process.pid()),
            // The pid in the engine's pid namespace: the host's, for an engine on it.
            Self::Exec(exec) => Some(exec.pid()).filter(|pid| *pid != 0),
            Self::Docker(_) | Self::Sse(_) => None,
        }
    }

    /// The short container id, for a container.
    pub(crate) fn container_id(&self) -> Option<String> {
        match self {
            Self::Process(_) | Self::Sse(_) => None,
            Self::Docker(container) => Some(container.id().chars().take(12).collect()),
            Self::Exec(exec) => Some(exec.container_id().chars().take(12).collect()),
        }
    }

    /// Completes when the instance has exited; answers a description of how.
    pub(crate) async fn exited(&mut self) -> String {
        match self {
            Self::Process(process) => process.exited().await,
            Self::Docker(container) => container.exited().await,
            Self::Exec(exec) => exec.exited().await,
            Self::Sse(run) => run.exited().await,
        }
    }

    /// Stops the instance: it has `grace` to exit on its own (its stdin is already closed),
    /// then it is terminated, then killed; containers are removed, execs' processes signalled
    /// (see `berth_docker::Exec`).
    pub(crate) async fn stop(self, grace: Duration) {
        match self {
            Self::Process(process) => process.stop(grace).await,
            Self::Docker(container) => container.stop(grace).await,
            Self::Exec(exec) => exec.stop(grace).await,
            // Nothing runs here to exit: the connection closes, and the server ends its session.
            Self::Sse(run) => run.stop(),
        }
    }
}

/// Starts instances of one backend.
pub(crate) enum Launcher {
    /// Local processes.
    Process { spec: Arc<StdioSpec> },
    /// Containers through a Docker engine.
    Docker { spec: Arc<StdioSpec>, hub: Arc<DockerHub>, backend: String },
    /// Connections to a legacy HTTP+SSE server (built by the gateway with [`Launcher::sse`]).
    Sse(Arc<LegacySse>),
    /// Execs in a running container, through a Docker engine.
    DockerExec { spec: Arc<StdioSpec>, hub: Arc<DockerHub>, container: ContainerWatch },
}

/// What berth last saw of a docker-exec backend's container: `None` while it runs (or before the
/// first look), else why execs cannot start in it.
#[derive(Debug, Default)]
pub(crate) struct ContainerWatch {
    unavailable: Mutex<Option<String>>,
}

impl ContainerWatch {
    fn unavailable(&self) -> Option<String> {
        self.unavailable.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records what was seen; answers whether it changed.
    fn set(&self, unavailable: Option<String>) -> bool {
        let mut current = self.unavailable.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *current != unavailable;
        *current = unavailable;
        changed
    }
}

impl Launcher {
    /// Builds the launcher of a stdio backend; docker backends need the gateway's hub.
    pub(crate) fn new(backend: &str, spec: Arc<StdioSpec>, hub: Option<Arc<DockerHub>>) -> Self {
        match (&spec.launch, hub) {
            (LaunchSpec::Docker(_), Some(hub)) => Self::Docker { spec, hub, backend: backend.to_string() },
            (LaunchSpec::DockerExec(_), Some(hub)) => {
                Self::DockerExec { spec, hub, container: ContainerWatch::default() }
            }
            (LaunchSpec::Docker(_) | LaunchSpec::DockerExec(_), None) => {
                unreachable!("the gateway builds a hub for docker and docker-exec backends")
            }
            (LaunchSpec::Process(_), _) => Self::Process { spec },
            (LaunchSpec::Sse(_), _) => unreachable!("the gateway builds sse launchers with Launcher::sse"),
        }
    }

    /// The launcher of a legacy HTTP+SSE backend.
    pub(crate) fn sse(connector: LegacySse) -> Self {
        Self::Sse(Arc::new(connector))
    }

    /// Whether instances can be started now (the Docker engine answers; a docker-exec backend's
    /// container runs; the SSE server did).
    pub(crate) fn is_available(&self) -> bool {
        self.unavailable().is_none()
    }

    /// Why instances cannot be started now, when berth knows.
    pub(crate) fn unavailable(&self) -> Option<String> {
        match self {
            Self::Process { .. } => None,
            Self::Docker { hub, .. } | Self::DockerExec { hub, .. } if !hub.engine().is_up() => {
                Some("the Docker engine does not answer".into())
            }
            Self::Docker { .. } => None,
            Self::DockerExec { container, .. } => container.unavailable(),
            Self::Sse(connector) => (!connector.is_up()).then(|| "the SSE server does not answer".into()),
        }
    }

    /// For a docker-exec backend, the task that looks at its container every 2 s until
    /// `shutdown`, so that readiness follows the container (missing or stopped: not ready, with
    /// the reason; running again: ready). Execs that ran in a container that stopped end with
    /// it, and their supervisors start new ones, with backoff, once it runs again.
    pub(crate) fn watch(
        self: &Arc<Self>,
        backend: &str,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let Self::DockerExec { spec, .. } = self.as_ref() else { return None };
        let LaunchSpec::DockerExec(exec) = &spec.launch else { return None };
        let (launcher, backend, name) = (Arc::clone(self), backend.to_string(), exec.container.clone());
        Some(async move {
            let Self::DockerExec { hub, container, .. } = launcher.as_ref() else { return };
            let mut ticker = tokio::time::interval(CONTAINER_CHECK);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                if !hub.engine().is_up() {
                    continue;
                }
                let seen = match hub.engine().container_state(&name).await {
                    Ok(berth_docker::ContainerState::Running) => None,
                    Ok(berth_docker::ContainerState::NotRunning(status)) => Some(
                        berth_docker::DockerError::ContainerNotRunning { container: name.clone(), status }.to_string(),
                    ),
                    Ok(berth_docker::ContainerState::Missing) => {
                        Some(berth_docker::DockerError::ContainerMissing { container: name.clone() }.to_string())
                    }
                    Err(error) => {
                        tracing::debug!(backend, %error, "cannot look at the container");
                        continue;
                    }
                };
                if container.set(seen.clone()) {
                    match seen {
                        Some(reason) => tracing::warn!(backend, "not ready: {reason}"),
                        None => tracing::info!(backend, container = name, "the container runs"),
                    }
                }
            }
        })
    }

    /// Starts one instance labelled `instance_id`.
    pub(crate) async fn launch(&self, instance_id: &str) -> Result<Launched, LaunchError> {
        match self {
            Self::Process { spec } => {
                let LaunchSpec::Process(process) = &spec.launch else {
                    unreachable!("a process launcher is only built for process specs")
                };
                spawn_process(process, &spec.env)
                    .map_err(|source| LaunchError::Spawn { command: process.command.clone(), source })
            }
            Self::Docker { spec, hub, backend } => {
                let LaunchSpec::Docker(docker) = &spec.launch else {
                    unreachable!("a docker launcher is only built for docker specs")
                };
                let owner = hub.owner().await?;
                let attached =
                    hub.engine().run(&container_spec(owner, backend, instance_id, docker, &spec.env)).await?;
                Ok(Launched {
                    stdin: attached.stdin,
                    stdout: attached.stdout,
                    stderr: attached.stderr,
                    handle: RunHandle::Docker(attached.container),
                })
            }
            Self::DockerExec { spec, hub, container } => {
                let LaunchSpec::DockerExec(exec) = &spec.launch else {
                    unreachable!("a docker-exec launcher is only built for docker-exec specs")
                };
                let env = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let started = hub.engine().exec(&berth_docker::ExecSpec { template: exec.clone(), env }).await;
                // What a launch learns of the container is as good as a look at it.
                match &started {
                    Err(
                        error @ (berth_docker::DockerError::ContainerMissing { .. }
                        | berth_docker::DockerError::ContainerNotRunning { .. }),
                    ) => {
                        container.set(Some(error.to_string()));
                    }
                    Ok(_) => {
                        container.set(None);
                    }
                    Err(_) => {}
                }
                let attached = started?;
                Ok(Launched {
                    stdin: attached.stdin,
                    stdout: attached.stdout,
                    stderr: attached.stderr,
                    handle: RunHandle::Exec(attached.exec),
                })
            }
            Self::Sse(connector) => connector.connect().await.map_err(LaunchError::Sse),
        }
    }
}

fn container_spec(
    owner: &berth_docker::Owner,
    backend: &str,
    instance_id: &str,
    docker: &crate::config::DockerSpec,
    env: &[(String, String)],
) -> berth_docker::ContainerSpec {
    berth_docker::ContainerSpec {
        owner: owner.clone(),
        backend: backend.to_string(),
        instance: instance_id.to_string(),
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        template: docker.clone(),
    }
}
