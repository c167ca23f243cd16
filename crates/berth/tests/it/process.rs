//! Subprocesses: the real `berth` binary run as its users run it, a port for a process that
//! binds its own, and the processes a test counts in `/proc`.

use std::{fs::File, net::SocketAddr, path::PathBuf, process::Stdio};

use tokio::process::{Child, Command};

use crate::wait::{HANG_GUARD, poll};

/// The settings berth reads from its environment: a developer's own must not reach the tests.
const BERTH_ENV: [&str; 6] = [
    "BERTH_CONFIG",
    "BERTH_LISTEN",
    "BERTH_AUTH_USERNAME",
    "BERTH_AUTH_PASSWORD",
    "BERTH_LOG_FORMAT",
    "BERTH_INSTANCE_NAME",
];

/// `berth` as a blocking subprocess, for tests that only run a command to its end; it logs at
/// `warn` unless the caller says otherwise.
pub(crate) fn berth_std_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    for name in BERTH_ENV {
        command.env_remove(name);
    }
    command.env("RUST_LOG", "warn");
    command
}

/// [`berth_std_command`] for the test's runtime, killed if the test drops it.
pub(crate) fn berth_command() -> Command {
    let mut command = Command::from(berth_std_command());
    command.kill_on_drop(true);
    command
}

/// A `berth serve` subprocess that listens, with its log in a file.
pub(crate) struct Served {
    /// The process (killed when dropped).
    pub(crate) child: Child,
    /// Where it listens, as its log says.
    pub(crate) addr: SocketAddr,
    /// Its log: standard error, at `info`.
    pub(crate) log: PathBuf,
}

impl Served {
    /// Spawns `command`, a `berth serve` made by [`berth_command`], with its log in `log`, and
    /// waits until the log says where it listens; panics if berth exits first, or takes a
    /// minute. A file rather than a pipe: a flood of log lines never blocks berth on a reader.
    pub(crate) async fn spawn(mut command: Command, log: PathBuf) -> Self {
        command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        let mut child = command.spawn().unwrap();
        let listening = poll(HANG_GUARD, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                panic!("berth exited with {status} before listening:\n{text}");
            }
            let addr = text.split_once("berth listening on ").map(|(_, rest)| rest.split_whitespace().next());
            std::future::ready(addr.flatten().map(str::to_owned).ok_or(text))
        })
        .await;
        let addr = listening.unwrap_or_else(|text| panic!("berth did not listen within a minute:\n{text}"));
        Self { child, addr: addr.parse().unwrap(), log }
    }
}

/// A loopback port free a moment ago, for a process that binds it itself.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether `pid` is a live process (not a zombie).
pub(crate) fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(") ").next().unwrap_or("").starts_with('Z'))
}

/// The live processes whose environment holds `var` (`NAME=value`): the instances of a backend
/// whose `env` sets it.
pub(crate) fn tagged_processes(var: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environ| environ.split(|b| *b == 0).any(|entry| entry == var.as_bytes()))
        })
        .filter(|pid| is_alive(*pid))
        .collect()
}

/// How many live processes have this test process as parent (the instances an in-process
/// berth spawned).
pub(crate) fn children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
            fields.first() != Some(&"Z") && fields.get(1) == Some(&me.as_str())
        })
        .count()
}
