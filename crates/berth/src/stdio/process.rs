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

/// What a server gets of berth's environment by default: enough to find programs, a home for
/// caches (`npx`, `uvx`), temporary files, the time zone and the locale; nothing else of the
/// operator's (cloud credentials, tokens) reaches it unless the backend says `inherit_env`.
const MINIMAL_ENV: &[&str] = &["PATH", "HOME", "TMPDIR", "TZ", "LANG", "LANGUAGE"];

/// Whether berth's variable `key` reaches a server: never `BERTH_*`; with `inherit`, every
/// other one; else those of [`MINIMAL_ENV`] and the locale's `LC_*`.
fn passes_on(key: &str, inherit: bool) -> bool {
    !key.starts_with(PRIVATE_PREFIX) && (inherit || MINIMAL_ENV.contains(&key) || key.starts_with("LC_"))
}

/// A running process group.
pub(crate) struct ProcessHandle {
    group: Pid,
    exit: watch::Receiver<Option<String>>,
}

/// Spawns `spec` with `env` added to what it gets of berth's environment (see [`passes_on`]).
pub(crate) fn spawn_process(spec: &ProcessSpec, env: &[(String, String)]) -> io::Result<Launched> {
    let mut command = tokio::process::Command::new(&spec.command);
    command
        .args(&spec.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    command.env_clear();
    command.envs(std::env::vars_os().filter(|(key, _)| passes_on(&key.to_string_lossy(), spec.inherit_env)));
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
    /// The process id of the leader.
    pub(crate) fn pid(&self) -> u32 {
        self.group.as_raw().unsigned_abs()
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_reaches_a_server_of_berths_environment() {
        let table = [
            ("PATH", false, true),
            ("HOME", false, true),
            ("LC_ALL", false, true),
            ("LC_TIME", false, true),
            ("AWS_SECRET_ACCESS_KEY", false, false),
            ("AWS_SECRET_ACCESS_KEY", true, true),
            ("BERTH_AUTH_PASSWORD", false, false),
            ("BERTH_AUTH_PASSWORD", true, false),
        ];
        for (key, inherit, passes) in table {
            assert_eq!(passes_on(key, inherit), passes, "{key} with inherit_env = {inherit}");
        }
    }
}
