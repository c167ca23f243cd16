//! The HTTP servers under test, each a child process: berth with a generated configuration,
//! and the bare rmcp baseline. Their memory is read from `/proc/<pid>/status`.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use http::StatusCode;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::{
    http::{Conn, Endpoint},
    roles::ROLE,
};

/// The user every berth of the bench knows.
pub(crate) const USER: &str = "bench";
/// Its password.
pub(crate) const PASSWORD: &str = "bench-password-not-secret";

/// A server process, killed when dropped.
pub(crate) struct Server {
    child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its scratch directory (configuration, log), removed when dropped.
    dir: Option<PathBuf>,
    /// Whether it leads a process group of its own, signalled whole (peer gateways run their
    /// server through a shell or a runtime of their own).
    group: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first so that berth stops its stdio servers and containers itself.
        self.signal(nix::sys::signal::Signal::SIGTERM);
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Server {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Current and peak resident memory, in KiB (`VmRSS`, `VmHWM`).
    pub(crate) fn memory(&self) -> (u64, u64) {
        memory(self.pid())
    }

    /// Stops the process: SIGTERM, up to `grace` to exit (berth drains and stops its
    /// backends), then SIGKILL.
    pub(crate) async fn stop(mut self, grace: Duration) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            self.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.kill().await;
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ =
                if self.group { nix::sys::signal::killpg(pid, signal) } else { nix::sys::signal::kill(pid, signal) };
        }
    }
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB (zeros when unreadable).
pub(crate) fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A free loopback address, for a server to listen on.
pub(crate) fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn role(name: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command.env(ROLE, name);
    Ok(command)
}

/// A command that runs berth's reference server on stdio (the `berth-conformance` binary).
pub(crate) fn conformance_stdio() -> anyhow::Result<Command> {
    role("conformance-stdio")
}

/// The path of this binary, for berth configurations that run the conformance stdio role.
pub(crate) fn self_exe() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?)
}

/// Starts berth with `backends` (TOML tables) plus one user, and waits until `/readyz` is 200
/// (every backend is marked `required`, so stdio servers have finished their handshake).
pub(crate) async fn berth(backends: &str) -> anyhow::Result<Server> {
    let addr = free_port()?;
    let dir = std::env::temp_dir().join(format!("berth-bench-{}-{}", std::process::id(), addr.port()));
    std::fs::create_dir_all(&dir)?;
    let config = format!(
        "[server]\nmax_connections = 20000\n\n[[auth.users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n{backends}"
    );
    let path = dir.join("berth.toml");
    std::fs::write(&path, config)?;
    let log = std::fs::File::create(dir.join("berth.log"))?;
    let mut command = role("berth")?;
    command
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .arg("--listen")
        .arg(addr.to_string())
        .env("RUST_LOG", std::env::var("BENCH_BERTH_LOG").unwrap_or_else(|_| "warn".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    let child = command.spawn().context("start berth")?;
    let server = Server { child, addr, dir: Some(dir.clone()), group: false };
    let endpoint = Endpoint::new(addr, "/", None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut conn) = Conn::open(&endpoint).await
            && conn.get(&endpoint, "/readyz").await.ok() == Some(StatusCode::OK)
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("berth.log")).unwrap_or_default();
            bail!("berth did not become ready within 60 s; its log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the bare rmcp service and waits for the address it prints.
pub(crate) async fn bare_rmcp() -> anyhow::Result<Server> {
    let mut command = role("bare-rmcp")?;
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
    let mut child = command.spawn().context("start the bare rmcp service")?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the bare rmcp service printed no address")??
        .context("the bare rmcp service exited")?;
    let addr = line.trim().parse().context("the bare rmcp service printed no address")?;
    Ok(Server { child, addr, dir: None, group: false })
}

/// Starts a peer gateway with `command` (which must listen on `addr`, serving `path`) in a
/// process group of its own, and waits until a session can be initialized through it.
pub(crate) async fn peer(mut command: Command, addr: SocketAddr, path: &str) -> anyhow::Result<Server> {
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).kill_on_drop(true);
    let child = command.spawn()?;
    let server = Server { child, addr, dir: None, group: true };
    let endpoint = Endpoint::new(addr, path, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut conn) = Conn::open(&endpoint).await
            && conn.initialize(&endpoint).await.is_ok()
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("no session could be initialized at {addr}{path} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
