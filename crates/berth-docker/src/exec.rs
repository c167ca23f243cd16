//! One process started in a container that runs already (`docker exec -i`): creation, attached
//! streams, exit, and the stop an exec does not have.
//!
//! The engine has no call that stops an exec. [`Exec::stop`] closes its stdin (the caller drops
//! [`AttachedExec::stdin`]), waits, then signals the exec's processes itself, in one of two ways:
//!
//! - **On the host.** When the pid the engine reports (`inspect_exec`, in the engine's pid
//!   namespace) is visible to berth, is in the container's cgroup and started when the exec did
//!   (berth on the engine's host, or in a container with the host's pid namespace), berth
//!   signals its process group: runc makes every exec the leader of a session and group of its
//!   own, so an `npx` or `sh -c` wrapper's children go with it.
//! - **In the container.** Otherwise (berth in its own pid namespace, or not allowed to signal
//!   the pid), a second exec, as the same user, runs a POSIX `sh` script that signals every
//!   process of the container whose environment holds the exec's marker `BERTH_EXEC=<id>`: the
//!   exec itself and whatever it started, since children inherit the environment.
//!
//! A container with neither (a `FROM scratch` image seen from another pid namespace) cannot be
//! signalled: the failure is logged, naming the container and the pid.

use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWrite;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::container::{STREAM_BUFFER, Stdin, demultiplex};
use crate::engine::Engine;
use crate::error::{DockerError, is_not_found};
use crate::liveness::{parse_stat, read_stat};

/// The environment variable that marks every process of one exec (see the module's doc).
pub const EXEC_MARKER: &str = "BERTH_EXEC";

/// How long [`Exec::stop`] waits after each signal for the exec to end.
const AFTER_SIGNAL: Duration = Duration::from_secs(2);
/// How often the exit of an exec whose output is still open is checked.
const EXIT_POLL: Duration = Duration::from_secs(5);
/// How long a started exec may take to get a pid.
const START_WITHIN: Duration = Duration::from_secs(10);

/// Signals every process of the container whose environment holds `BERTH_EXEC=$1` with `$2`;
/// exits 0. Only POSIX `sh` and its builtins: dash reads `/proc/<pid>/environ` with its NUL
/// separators dropped, which leaves the fixed-length marker intact.
const KILL_SCRIPT: &str = r#"for d in /proc/[0-9]*; do
  e=
  { IFS= read -r e < "$d/environ"; } 2>/dev/null
  case "$e" in *"BERTH_EXEC=$1"*) kill -s "$2" "${d#/proc/}" 2>/dev/null ;; esac
done
exit 0"#;

/// What every exec of one backend runs, and where. Built once from the configuration; each
/// launch adds its environment ([`ExecSpec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTemplate {
    /// The container's name or id.
    pub container: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// `user`, `uid`, `uid:gid`; `None` for the container's user.
    pub user: Option<String>,
    /// The working directory; `None` for the container's.
    pub workdir: Option<String>,
}

/// Everything needed to start one exec.
///
/// There is deliberately no `Debug`: `env` carries secrets.
pub struct ExecSpec {
    /// What runs, and where.
    pub template: ExecTemplate,
    /// Environment, `"K=V"`, added to the container's. Never logged.
    pub env: Vec<String>,
}

/// Whether a container can take execs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// It runs.
    Running,
    /// It exists but does not run; the engine's status (`exited`, `paused`, `created`, ...).
    NotRunning(String),
    /// The engine does not know it.
    Missing,
}

/// A started exec's standard streams, and the handle that stops it.
pub struct AttachedExec {
    /// The exec's standard input; dropping it closes the input (the engine closes the process's
    /// stdin when the attach connection's input ends).
    pub stdin: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
    /// Standard output, in chunks as the engine framed them.
    pub stdout: BoxStream<'static, std::io::Result<Bytes>>,
    /// Standard error, as `stdout`.
    pub stderr: BoxStream<'static, std::io::Result<Bytes>>,
    /// The exec itself.
    pub exec: Exec,
}

/// A running exec. [`Exec::stop`] ends its processes; dropping it without stopping signals them
/// in a background task, and logs a warning.
pub struct Exec {
    docker: Docker,
    id: String,
    container: String,
    container_id: String,
    user: Option<String>,
    marker: String,
    /// The pid in the engine's pid namespace, and its start time when berth can see it there.
    pid: u32,
    start: Option<u64>,
    exit: watch::Receiver<Option<String>>,
    reader: JoinHandle<()>,
    waiter: JoinHandle<()>,
    stopped: bool,
}

impl Engine {
    /// Whether `container` (a name or id) exists and runs.
    pub async fn container_state(&self, container: &str) -> Result<ContainerState, DockerError> {
        let docker = self.docker()?;
        match docker.inspect_container(container, None).await {
            Ok(inspect) => {
                let state = inspect.state.unwrap_or_default();
                if state.running == Some(true) && state.paused != Some(true) {
                    Ok(ContainerState::Running)
                } else {
                    let status = state.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into());
                    Ok(ContainerState::NotRunning(status))
                }
            }
            Err(error) if is_not_found(&error) => Ok(ContainerState::Missing),
            Err(error) => Err(error.into()),
        }
    }

    /// Starts `spec`'s command in its container with stdin, stdout and stderr attached
    /// (`Tty=false`), marked with [`EXEC_MARKER`].
    pub async fn exec(&self, spec: &ExecSpec) -> Result<AttachedExec, DockerError> {
        let docker = self.docker()?;
        let template = &spec.template;
        let container = template.container.clone();
        let container_id = match docker.inspect_container(&container, None).await {
            Ok(inspect) => {
                let state = inspect.state.unwrap_or_default();
                if state.running != Some(true) || state.paused == Some(true) {
                    let status = state.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into());
                    return Err(DockerError::ContainerNotRunning { container, status });
                }
                inspect.id.unwrap_or_else(|| container.clone())
            }
            Err(error) if is_not_found(&error) => return Err(DockerError::ContainerMissing { container }),
            Err(error) => return Err(error.into()),
        };
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let mut env = spec.env.clone();
        env.push(format!("{EXEC_MARKER}={marker}"));
        let options = CreateExecOptions {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            env: Some(env),
            cmd: Some(template.command.clone()),
            user: template.user.clone(),
            working_dir: template.workdir.clone(),
            ..Default::default()
        };
        let exec_error = |source| DockerError::Exec { container: container.clone(), source };
        let id = docker.create_exec(&container_id, options).await.map_err(exec_error)?.id;
        let started = docker
            .start_exec(&id, Some(StartExecOptions { detach: false, tty: false, output_capacity: None }))
            .await
            .map_err(exec_error)?;
        let StartExecResults::Attached { output, input } = started else {
            unreachable!("an exec started without detach is attached")
        };
        let (out_tx, out_rx) = futures::channel::mpsc::channel(STREAM_BUFFER);
        let (err_tx, err_rx) = futures::channel::mpsc::channel(STREAM_BUFFER);
        let (ended_tx, ended) = oneshot::channel();
        let reader = tokio::spawn(async move {
            demultiplex(output, out_tx, err_tx).await;
            let _ = ended_tx.send(());
        });
        let stdin = Box::pin(Stdin { inner: Some(input) });

        let pid = match started_pid(&docker, &id).await {
            Ok(pid) => pid,
            Err(error) => {
                reader.abort();
                return Err(match error {
                    Started::Failed(code) => {
                        DockerError::ExecFailed { container, command: template.command.join(" "), code }
                    }
                    Started::Api(source) => exec_error(source),
                });
            }
        };
        let start = host_start(pid, &container_id);
        tracing::debug!(%container, exec = %id, pid, visible = start.is_some(), "started exec");
        let (exit_tx, exit) = watch::channel(None);
        let waiter = tokio::spawn(wait_exit(docker.clone(), id.clone(), ended, exit_tx));
        Ok(AttachedExec {
            stdin,
            stdout: out_rx.boxed(),
            stderr: err_rx.boxed(),
            exec: Exec {
                docker,
                id,
                container,
                container_id,
                user: template.user.clone(),
                marker,
                pid,
                start,
                exit,
                reader,
                waiter,
                stopped: false,
            },
        })
    }
}

/// Why a started exec has no pid.
enum Started {
    /// It ended at once with this code (126: not executable, 127: not found).
    Failed(i64),
    /// The engine's answer.
    Api(bollard::errors::Error),
}

/// The pid of a started exec, once the engine has one.
async fn started_pid(docker: &Docker, id: &str) -> Result<u32, Started> {
    let deadline = tokio::time::Instant::now() + START_WITHIN;
    loop {
        let inspect = docker.inspect_exec(id).await.map_err(Started::Api)?;
        let pid = inspect.pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0);
        match (inspect.running, inspect.exit_code) {
            (Some(true), _) if pid != 0 => return Ok(pid),
            // It ran and ended already: the code says whether it could start at all.
            (Some(false), Some(code)) if code == 126 || code == 127 => return Err(Started::Failed(code)),
            (Some(false), Some(_)) => return Ok(pid),
            _ if tokio::time::Instant::now() >= deadline => return Ok(pid),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The start time of host pid `pid`, when berth sees it in its own pid namespace as a process of
/// container `container_id`.
fn host_start(pid: u32, container_id: &str) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    if !cgroup.contains(container_id) {
        return None;
    }
    read_stat(pid).as_deref().and_then(parse_stat).map(|(_, start)| start)
}

/// Waits for the exec to end (its output closes, or a periodic check finds it ended) and
/// publishes a description of the exit.
async fn wait_exit(docker: Docker, id: String, mut ended: oneshot::Receiver<()>, exit: watch::Sender<Option<String>>) {
    let mut output_open = true;
    let description = loop {
        if output_open {
            tokio::select! {
                _ = &mut ended => output_open = false,
                () = tokio::time::sleep(EXIT_POLL) => {}
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match docker.inspect_exec(&id).await {
            Ok(inspect) if inspect.running == Some(true) => {}
            Ok(inspect) => match inspect.exit_code {
                Some(code) => break format!("exited with code {code}"),
                None => break "exited".to_owned(),
            },
            Err(error) if is_not_found(&error) => break "lost track of the exec: the engine forgot it".to_owned(),
            Err(error) if !output_open => break format!("lost track of the exec: {error}"),
            Err(_) => {}
        }
    };
    let _ = exit.send(Some(description));
}

impl Exec {
    /// The exec's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's id.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// The exec's pid in the engine's pid namespace (0 if the engine gave none).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The value of [`EXEC_MARKER`] in the exec's environment.
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// Completes when the exec has ended; answers a description. Can be called again.
    pub async fn exited(&mut self) -> String {
        match self.exit.wait_for(Option::is_some).await {
            Ok(exit) => exit.clone().unwrap_or_default(),
            Err(_) => "the exec's exit could not be observed".to_owned(),
        }
    }

    async fn exited_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.exited()).await.is_ok()
    }

    /// Stops the exec: standard input is already closed by the caller; it gets `grace` to exit,
    /// then SIGTERM, then SIGKILL (see the module's doc for how they are sent). Logs an error
    /// when its processes could not be signalled.
    pub async fn stop(mut self, grace: Duration) {
        self.stopped = true;
        if !self.exited_within(grace).await {
            tracing::debug!(container = %self.container, exec = %self.id, "exec did not exit within its grace period");
            for signal in [Signal::SIGTERM, Signal::SIGKILL] {
                if let Err(error) = self.signal(signal).await {
                    tracing::error!(
                        container = %self.container, pid = self.pid, %error,
                        "cannot stop the exec's process; it keeps running in the container"
                    );
                    break;
                }
                if self.exited_within(AFTER_SIGNAL).await {
                    break;
                }
            }
        }
        self.reader.abort();
        self.waiter.abort();
    }

    /// Sends `signal` to the exec's processes: to its process group on the host when berth sees
    /// it, else through [`Exec::signal_in_container`].
    pub async fn signal(&self, signal: Signal) -> Result<(), String> {
        if let Some(start) = self.start {
            let same = read_stat(self.pid).as_deref().and_then(parse_stat).is_some_and(|(_, s)| s == start);
            if !same {
                // Gone (or the pid was reused): nothing of the exec's group is left to signal
                // through it; the marker finds any process that left the group.
                return self.signal_in_container(signal).await.or(Ok(()));
            }
            let group = Pid::from_raw(i32::try_from(self.pid).map_err(|e| e.to_string())?);
            match killpg(group, signal) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => return Ok(()),
                Err(errno) => tracing::debug!(pid = self.pid, %errno, "cannot signal the exec on the host"),
            }
        }
        self.signal_in_container(signal).await
    }

    /// Sends `signal` to every process of the container that carries this exec's marker, from a
    /// second exec of POSIX `sh` as the same user.
    pub async fn signal_in_container(&self, signal: Signal) -> Result<(), String> {
        let name = signal.as_str().trim_start_matches("SIG");
        let cmd = ["sh", "-c", KILL_SCRIPT, "berth-stop", &self.marker, name].map(str::to_owned).to_vec();
        let options = CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(cmd),
            user: self.user.clone(),
            ..Default::default()
        };
        let failed = |error: bollard::errors::Error| format!("the exec of `sh` to signal it failed: {error}");
        let id = self.docker.create_exec(&self.container_id, options).await.map_err(failed)?.id;
        match self.docker.start_exec(&id, None).await.map_err(failed)? {
            StartExecResults::Attached { mut output, .. } => while output.next().await.is_some() {},
            StartExecResults::Detached => {}
        }
        let code = self.docker.inspect_exec(&id).await.map_err(failed)?.exit_code;
        match code {
            Some(0) => Ok(()),
            Some(126 | 127) => Err(format!(
                "berth cannot see its pid {} and the container has no `sh` to signal it from inside",
                self.pid
            )),
            other => Err(format!("the `sh` that signals it exited with {other:?}")),
        }
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.reader.abort();
        self.waiter.abort();
        tracing::warn!(container = %self.container, exec = %self.id, "exec dropped without stop(); killing it");
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(container = %self.container, pid = self.pid, "no runtime to kill the exec");
            return;
        };
        let orphan = Exec {
            docker: self.docker.clone(),
            id: self.id.clone(),
            container: self.container.clone(),
            container_id: self.container_id.clone(),
            user: self.user.clone(),
            marker: self.marker.clone(),
            pid: self.pid,
            start: self.start,
            exit: self.exit.clone(),
            reader: runtime.spawn(async {}),
            waiter: runtime.spawn(async {}),
            stopped: true,
        };
        runtime.spawn(async move {
            if let Err(error) = orphan.signal(Signal::SIGKILL).await {
                tracing::error!(container = %orphan.container, pid = orphan.pid, %error, "cannot kill the exec");
            }
        });
    }
}
