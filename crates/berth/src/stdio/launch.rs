//! Starting one instance of a stdio server, as a process or a container, and stopping it.
//!
//! Both kinds hand the relay the same thing: a writer for the server's stdin, chunk streams of
//! its stdout and stderr, and a handle that reports the exit and stops the instance.

use std::{io, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::io::AsyncWrite;

use super::docker_hub::DockerHub;
use super::process::{ProcessHandle, spawn_process};
use crate::config::{LaunchSpec, StdioSpec};

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
}

/// The running instance.
pub(crate) enum RunHandle {
    /// A process group.
    Process(ProcessHandle),
    /// A container.
    Docker(berth_docker::Container),
}

impl RunHandle {
    /// The process id, for a process.
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Self::Process(process) => Some(process.pid()),
            Self::Docker(_) => None,
        }
    }

    /// The short container id, for a container.
    pub(crate) fn container_id(&self) -> Option<String> {
        match self {
            Self::Process(_) => None,
            Self::Docker(container) => Some(container.id().chars().take(12).collect()),
        }
    }

    /// Completes when the instance has exited; answers a description of how.
    pub(crate) async fn exited(&mut self) -> String {
        match self {
            Self::Process(process) => process.exited().await,
            Self::Docker(container) => container.exited().await,
        }
    }

    /// Stops the instance: it has `grace` to exit on its own (its stdin is already closed),
    /// then it is terminated, then killed; containers are removed.
    pub(crate) async fn stop(self, grace: Duration) {
        match self {
            Self::Process(process) => process.stop(grace).await,
            Self::Docker(container) => container.stop(grace).await,
        }
    }
}

/// Starts instances of one backend.
pub(crate) enum Launcher {
    /// Local processes.
    Process { spec: Arc<StdioSpec> },
    /// Containers through a Docker engine.
    Docker { spec: Arc<StdioSpec>, hub: Arc<DockerHub>, backend: String },
}

impl Launcher {
    /// Builds the launcher of a stdio backend; docker backends need the gateway's hub.
    pub(crate) fn new(backend: &str, spec: Arc<StdioSpec>, hub: Option<Arc<DockerHub>>) -> Self {
        match (&spec.launch, hub) {
            (LaunchSpec::Docker(_), Some(hub)) => Self::Docker { spec, hub, backend: backend.to_string() },
            (LaunchSpec::Docker(_), None) => unreachable!("the gateway builds a hub for docker backends"),
            (LaunchSpec::Process(_), _) => Self::Process { spec },
        }
    }

    /// Whether instances can be started now (the Docker engine answers).
    pub(crate) fn is_available(&self) -> bool {
        match self {
            Self::Process { .. } => true,
            Self::Docker { hub, .. } => hub.engine().is_up(),
        }
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
