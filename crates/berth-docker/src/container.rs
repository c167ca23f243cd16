//! One container: its specification, creation, attached streams, exit and removal.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWrite;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine::{Engine, LABEL_BACKEND, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY};
use crate::error::{DockerError, is_not_found};
use crate::owner::Owner;

/// How many demultiplexed frames may wait in each of the stdout and stderr streams before the
/// reader of the attach connection waits for the consumer (back-pressure, as with a pipe).
pub(crate) const STREAM_BUFFER: usize = 64;
/// Options of every tmpfs mount; Docker's default mode 1777 lets any user write.
const TMPFS_OPTIONS: &str = "rw,nosuid,nodev";

/// How every container of one backend is made: the image, what runs in it, and its hardening.
/// Built once from the configuration; each launch adds its names and environment
/// ([`ContainerSpec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerTemplate {
    /// The image reference.
    pub image: String,
    /// Whether to pull the image when the engine does not have it.
    pub pull_if_missing: bool,
    /// Overrides the image's `CMD`.
    pub command: Option<Vec<String>>,
    /// Overrides the image's `ENTRYPOINT`.
    pub entrypoint: Option<Vec<String>>,
    /// Overrides the image's working directory.
    pub workdir: Option<String>,
    /// `none`, `bridge`, `host`, a network's name, ...
    pub network_mode: String,
    /// Capabilities to drop (`ALL` for all).
    pub cap_drop: Vec<String>,
    /// Capabilities to add back.
    pub cap_add: Vec<String>,
    /// Whether the root filesystem is read-only.
    pub read_only: bool,
    /// Mount points of tmpfs filesystems (e.g. `/tmp`).
    pub tmpfs: Vec<String>,
    /// Memory limit in bytes; 0 for none.
    pub memory_bytes: i64,
    /// CPU limit in billionths of a CPU; 0 for none.
    pub nano_cpus: i64,
    /// Process limit; 0 for none.
    pub pids_limit: i64,
    /// `user`, `uid`, `uid:gid`; `None` for the image's user. Images without `/etc/passwd`
    /// (`FROM scratch`) need numeric ids.
    pub user: Option<String>,
    /// Whether to run Docker's init as PID 1 (forwards signals, reaps zombies).
    pub init: bool,
    /// Whether to set `no-new-privileges` (setuid binaries gain nothing).
    pub no_new_privileges: bool,
    /// Bind mounts, `"host:container:ro|rw"`.
    pub binds: Vec<String>,
}

/// Everything needed to create the container of one instance.
///
/// There is deliberately no `Debug`: `env` carries secrets.
pub struct ContainerSpec {
    /// Whose container it is (labels `berth.deployment`, `berth.run`, `berth.run.*`).
    pub owner: Owner,
    /// The backend's name (label `berth.backend`, part of the container name).
    pub backend: String,
    /// The instance's id, unique within the backend (label `berth.instance`).
    pub instance: String,
    /// Environment, `"K=V"`. Never logged.
    pub env: Vec<String>,
    /// The backend's image and hardening.
    pub template: ContainerTemplate,
}

/// A started container's standard streams, and the handle that stops it.
pub struct Attached {
    /// The container's standard input. Dropping it closes the input: the container sees end of
    /// file (the container is created with `StdinOnce`, see [`Engine::run`]).
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// Standard output, in chunks as the engine framed them (not aligned on lines). Ends when the
    /// container exits or the attach connection is lost.
    pub stdout: BoxStream<'static, std::io::Result<Bytes>>,
    /// Standard error, as `stdout`. Drain both: a full one holds the other back.
    pub stderr: BoxStream<'static, std::io::Result<Bytes>>,
    /// The container itself.
    pub container: Container,
}

/// A running container owned by berth. [`Container::stop`] removes it; dropping it without
/// stopping removes it too, in a background task, and logs a warning.
pub struct Container {
    docker: Docker,
    id: String,
    name: String,
    exit: watch::Receiver<Option<String>>,
    /// Polls the engine's wait endpoint; fills `exit`.
    waiter: JoinHandle<()>,
    /// Reads the attach connection into the stdout and stderr streams.
    reader: JoinHandle<()>,
    stopped: bool,
}

impl Engine {
    /// Creates, attaches and starts a container for one instance.
    ///
    /// The container is created with `OpenStdin`, `AttachStdin/Stdout/Stderr`, `Tty=false` and
    /// `StdinOnce=true`: the end of the attach connection's input closes the container's standard
    /// input, so that closing [`Attached::stdin`] asks a stdio server to exit the way the MCP
    /// stdio transport prescribes, and a container whose berth died (`kill -9` closes the
    /// connection) exits by itself instead of running on unattended until it is swept. With
    /// `StdinOnce=false`, the engine would instead keep the container's input open and end the
    /// attached output streams, so the grace period of [`Container::stop`] would only wait for
    /// nothing. Nothing is lost by it: once the attach connection is gone berth cannot talk to
    /// the instance any more and starts a new one.
    ///
    /// berth attaches before starting, so no early output is lost.
    pub async fn run(&self, spec: &ContainerSpec) -> Result<Attached, DockerError> {
        let docker = self.docker()?;
        ensure_image(&docker, &spec.template).await?;

        let name = container_name(&spec.backend, &spec.instance);
        let mut labels: HashMap<String, String> = spec.owner.labels().into_iter().collect();
        labels.extend([
            (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
            (LABEL_BACKEND.to_owned(), spec.backend.clone()),
            (LABEL_INSTANCE.to_owned(), spec.instance.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(spec.template.image.clone()),
            cmd: spec.template.command.clone(),
            entrypoint: spec.template.entrypoint.clone(),
            working_dir: spec.template.workdir.clone(),
            env: Some(spec.env.clone()),
            user: spec.template.user.clone(),
            labels: Some(labels),
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            host_config: Some(host_config(&spec.template)),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = docker
            .create_container(Some(options), body)
            .await
            .map_err(|source| DockerError::Create { name: name.clone(), source })?;
        for warning in &created.warnings {
            tracing::warn!(container = %name, %warning, "Docker warning on create");
        }
        let id = created.id;
        tracing::debug!(container = %name, %id, image = %spec.template.image, "created container");

        // From here on, a failure must not leave the created container behind.
        match attach_and_start(&docker, &id, &name).await {
            Ok(attached) => Ok(attached),
            Err(error) => {
                remove(&docker, &id, &name).await;
                Err(error)
            }
        }
    }
}

async fn attach_and_start(docker: &Docker, id: &str, name: &str) -> Result<Attached, DockerError> {
    let options =
        AttachContainerOptionsBuilder::new().stream(true).stdin(true).stdout(true).stderr(true).logs(false).build();
    let attach = docker
        .attach_container(id, Some(options))
        .await
        .map_err(|source| DockerError::Attach { name: name.to_owned(), source })?;

    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(|source| DockerError::Start { name: name.to_owned(), source })?;

    // The wait request is sent only after start: condition "not-running" on a created (never
    // started) container would answer at once, and "next-exit" sent after a quick exit would
    // never answer. After start, "not-running" answers as soon as the container has exited,
    // even when that happened before the request arrived.
    let (exit_tx, exit) = watch::channel(None);
    let waiter = tokio::spawn(wait_exit(docker.clone(), id.to_owned(), exit_tx));

    let (out_tx, out_rx) = futures::channel::mpsc::channel(STREAM_BUFFER);
    let (err_tx, err_rx) = futures::channel::mpsc::channel(STREAM_BUFFER);
    let reader = tokio::spawn(demultiplex(attach.output, out_tx, err_tx));

    Ok(Attached {
        stdin: Box::pin(Stdin { inner: Some(attach.input) }),
        stdout: out_rx.boxed(),
        stderr: err_rx.boxed(),
        container: Container {
            docker: docker.clone(),
            id: id.to_owned(),
            name: name.to_owned(),
            exit,
            waiter,
            reader,
            stopped: false,
        },
    })
}

impl Container {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's name, `berth-<backend>-<instance>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Completes when the container has exited; answers a description (exit code, or why the
    /// engine could not tell). Can be called again: it then answers at once.
    pub async fn exited(&mut self) -> String {
        match self.exit.wait_for(Option::is_some).await {
            Ok(exit) => exit.clone().unwrap_or_default(),
            // The waiter task ended without an answer: it can only have been aborted or panicked.
            Err(_) => "the container's exit could not be observed".to_owned(),
        }
    }

    /// Stops the container: standard input is already closed by the caller (by dropping
    /// [`Attached::stdin`]); it gets `grace` to exit, then a stop (SIGTERM, then SIGKILL after
    /// `grace` again, between 1 and 10 s), then the container is removed. Never leaks the
    /// container: a failed removal is logged and retried once, and a failed stop still removes
    /// it by force.
    pub async fn stop(mut self, grace: Duration) {
        self.stopped = true;
        let exited = tokio::time::timeout(grace, self.exited()).await.is_ok();
        if !exited {
            let t = grace.as_secs().clamp(1, 10) as i32;
            tracing::debug!(container = %self.name, "container did not exit within its grace period; stopping it");
            let options = StopContainerOptionsBuilder::new().t(t).build();
            match self.docker.stop_container(&self.id, Some(options)).await {
                Ok(()) => {}
                Err(error) if is_not_found(&error) => {}
                // The forced removal below kills it anyway.
                Err(error) => {
                    tracing::warn!(container = %self.name, %error, "cannot stop container")
                }
            }
        }
        remove(&self.docker, &self.id, &self.name).await;
        self.reader.abort();
        self.waiter.abort();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.reader.abort();
        self.waiter.abort();
        tracing::warn!(container = %self.name, "container dropped without stop(); removing it");
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let (docker, id, name) = (self.docker.clone(), self.id.clone(), self.name.clone());
                runtime.spawn(async move { remove(&docker, &id, &name).await });
            }
            Err(_) => tracing::error!(
                container = %self.name,
                "no runtime to remove the container; it is left for a sweep"
            ),
        }
    }
}

/// Removes a container by force, retrying once; logs what fails.
async fn remove(docker: &Docker, id: &str, name: &str) {
    for attempt in 1..=2 {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match docker.remove_container(id, Some(options)).await {
            Ok(()) => {
                tracing::debug!(container = %name, "removed container");
                return;
            }
            Err(error) if is_not_found(&error) => return,
            Err(error) if attempt == 1 => {
                tracing::warn!(container = %name, %error, "cannot remove container; retrying once");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => tracing::error!(
                container = %name, %error,
                "cannot remove container; it is left for a sweep"
            ),
        }
    }
}

/// Waits for the container to exit and publishes a description of the exit.
async fn wait_exit(docker: Docker, id: String, exit: watch::Sender<Option<String>>) {
    let options = WaitContainerOptionsBuilder::new().condition("not-running").build();
    let mut answers = docker.wait_container(&id, Some(options));
    let description = match answers.next().await {
        Some(Ok(answer)) => match answer.error.and_then(|e| e.message) {
            Some(message) if !message.is_empty() => {
                format!("exited with code {} ({message})", answer.status_code)
            }
            _ => format!("exited with code {}", answer.status_code),
        },
        // bollard turns a non-zero exit code into this error.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { error, code })) => {
            if error.is_empty() {
                format!("exited with code {code}")
            } else {
                format!("exited with code {code} ({error})")
            }
        }
        Some(Err(error)) => format!("lost track of the container: {error}"),
        None => "lost track of the container: the engine closed the wait request".to_owned(),
    };
    let _ = exit.send(Some(description));
}

/// Splits the attach connection's frames into the stdout and stderr streams.
pub(crate) async fn demultiplex(
    mut output: Pin<Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    mut stdout: futures::channel::mpsc::Sender<std::io::Result<Bytes>>,
    mut stderr: futures::channel::mpsc::Sender<std::io::Result<Bytes>>,
) {
    while let Some(frame) = output.next().await {
        // A consumer that dropped its stream is not interested; the other one still is.
        match frame {
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                let _ = stdout.send(Ok(message)).await;
            }
            Ok(LogOutput::StdErr { message }) => {
                let _ = stderr.send(Ok(message)).await;
            }
            Ok(LogOutput::StdIn { .. }) => {}
            Err(error) => {
                let _ = stdout.send(Err(std::io::Error::other(error))).await;
                return;
            }
        }
    }
}

/// The attach connection's write half, which closes the connection's input when dropped (a bare
/// write half only does so once the read half is dropped too).
pub(crate) struct Stdin {
    pub(crate) inner: Option<Pin<Box<dyn AsyncWrite + Send>>>,
}

impl AsyncWrite for Stdin {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(inner) => inner.as_mut().poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => inner.as_mut().poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => inner.as_mut().poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Drop for Stdin {
    fn drop(&mut self) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = inner.shutdown().await;
            });
        }
    }
}

/// Pulls the image when it is missing and pulling is allowed.
async fn ensure_image(docker: &Docker, spec: &ContainerTemplate) -> Result<(), DockerError> {
    match docker.inspect_image(&spec.image).await {
        Ok(_) => return Ok(()),
        Err(error) if is_not_found(&error) => {}
        Err(error) => return Err(error.into()),
    }
    if !spec.pull_if_missing {
        return Err(DockerError::ImageMissing { image: spec.image.clone() });
    }
    tracing::info!(image = %spec.image, "pulling image");
    let options = CreateImageOptionsBuilder::new().from_image(&spec.image).build();
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(step) = progress.next().await {
        step.map_err(|source| DockerError::Pull { image: spec.image.clone(), source })?;
    }
    Ok(())
}

fn host_config(spec: &ContainerTemplate) -> HostConfig {
    let positive = |v: i64| (v > 0).then_some(v);
    let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    HostConfig {
        network_mode: Some(spec.network_mode.clone()),
        cap_drop: nonempty(&spec.cap_drop),
        cap_add: nonempty(&spec.cap_add),
        security_opt: spec.no_new_privileges.then(|| vec!["no-new-privileges:true".to_owned()]),
        readonly_rootfs: Some(spec.read_only),
        tmpfs: (!spec.tmpfs.is_empty())
            .then(|| spec.tmpfs.iter().map(|m| (m.clone(), TMPFS_OPTIONS.to_owned())).collect()),
        memory: positive(spec.memory_bytes),
        nano_cpus: positive(spec.nano_cpus),
        pids_limit: positive(spec.pids_limit),
        init: Some(spec.init),
        binds: nonempty(&spec.binds),
        auto_remove: Some(false),
        ..Default::default()
    }
}

/// `berth-<backend>-<instance>`, with what Docker does not accept in a name replaced by `_`.
fn container_name(backend: &str, instance: &str) -> String {
    format!("berth-{backend}-{instance}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_are_valid_for_docker() {
        for (backend, instance, expected) in
            [("fs", "1", "berth-fs-1"), ("my server", "a/b", "berth-my_server-a_b"), ("ünï", "x", "berth-_n_-x")]
        {
            assert_eq!(container_name(backend, instance), expected);
        }
    }
}
