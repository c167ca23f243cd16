//! Local stdio servers, each in a process group of its own.
//!
//! `npx`, `uvx` and `sh -c` start the real server as a child of a wrapper; killing the wrapper
//! alone leaves the server running (the most reported leak of MCP gateways). Every instance
//! is therefore the leader of a new process group, and berth signals the whole group: when
//! stopping it, and again after the leader has exited, to take any orphan with it.

use std::{io, process::Stdio, time::Duration};

use futures::StreamExt;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::sync::watch;
use tokio_util::io::ReaderStream;

use super::launch::{Launched, RunHandle};
use crate::config::ProcessSpec;

/// Variables of berth's own environment that never reach a server (credentials above all).
const PRIVATE_PREFIX: &str = "BERTH_";

/// A running process group.
pub(crate) struct ProcessHandle {
    group: Pid,
    exit: watch::Receiver<Option<String>>,
}

/// Spawns `spec` with `env` added to berth's environment (minus `BERTH_*`).
pub(crate) fn spawn_process(spec: &ProcessSpec, env: &[(String, String)]) -> io::Result<Launched> {
    let mut command = tokio::process::Command::new(&spec.command);
    command
        .args(&spec.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(PRIVATE_PREFIX) {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn()?;
    let pid = child.id().ok_or_else(|| io::Error::other("the process exited at once"))?;
    let group = Pid::from_raw(i32::try_from(pid).map_err(io::Error::other)?);
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (report, exit) = watch::channel(None);
    tokio::spawn(async move {
        let description = match child.wait().await {
            Ok(status) => status.to_string(),
            Err(error) => format!("wait failed: {error}"),
        };
        // The leader is gone; take any process it left behind with it.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = report.send(Some(description));
    });
    Ok(Launched {
        stdin: Box::pin(stdin),
        stdout: ReaderStream::new(stdout).boxed(),
        stderr: ReaderStream::new(stderr).boxed(),
        handle: RunHandle::Process(ProcessHandle { group, exit }),
    })
}

impl ProcessHandle {
    /// Completes when the leader has exited (and its group was killed).
    pub(crate) async fn exited(&mut self) -> String {
        match self.exit.wait_for(Option::is_some).await {
            Ok(description) => description.clone().unwrap_or_default(),
            Err(_) => "exit status lost".to_string(),
        }
    }

    async fn exited_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.exited()).await.is_ok()
    }

    /// Stops the group: `grace` to exit after stdin closed, then SIGTERM, then SIGKILL.
    pub(crate) async fn stop(mut self, grace: Duration) {
        if self.exited_within(grace).await {
            return;
        }
        let _ = killpg(self.group, Signal::SIGTERM);
        if self.exited_within(Duration::from_secs(2)).await {
            return;
        }
        let _ = killpg(self.group, Signal::SIGKILL);
        self.exited().await;
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        // A handle dropped without `stop` (a panic, an aborted task) still takes its group
        // down; on a group that already exited this is a harmless ESRCH.
        if self.exit.borrow().is_none() {
            let _ = killpg(self.group, Signal::SIGKILL);
        }
    }
}
