//! Two berths sharing one Docker engine: with default settings they never touch each other's
//! containers, and a berth restarted after `kill -9` under another host name (as Compose
//! recreates a container) removes what its predecessor left, and nothing of anybody else.
//!
//! Each berth is the real binary, without `BERTH_INSTANCE_NAME`; containers are found by their
//! backend's name, unique to the test (`berth.backend`), never by berth's ownership labels.

use std::{path::Path, process::Command};

use serde_json::json;

use crate::{
    harness::{RemoveContainers, config_with, containers_with, docker_ready, running_with, unique_name},
    process::{Served, berth_command, free_port},
    raw::RawSession,
    wait::wait_until,
};

/// A configuration with the fixture image as backend `name`, shared and started with berth,
/// plus `extra` keys.
fn fixture_backend(name: &str, extra: &str) -> String {
    config_with(&format!(
        "[backends.{name}]\nkind = \"docker\"\nimage = \"berth-test/fixture:dev\"\nstart = \"eager\"\n{extra}\n\n\
         [backends.{name}-solo]\nkind = \"docker\"\nimage = \"berth-test/fixture:dev\"\nsharing = \"per-session\"\n{extra}\n"
    ))
}

/// `berth serve` on `config`, listening on `port`, as host `hostname`, logging to `log`.
async fn serve(config: &Path, port: u16, hostname: &str, log: &Path) -> Served {
    let mut command = berth_command();
    command.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--config"]).arg(config).env("HOSTNAME", hostname);
    Served::spawn(command, log.to_owned()).await
}

/// Sends SIGTERM and expects a clean exit.
async fn terminate(served: &mut Served) {
    let pid = served.child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(served.child.wait().await.unwrap().code(), Some(0), "{}", std::fs::read_to_string(&served.log).unwrap());
}

/// `berth.backend=<name>`.
fn backend(name: &str) -> String {
    format!("berth.backend={name}")
}

/// Two berths with default settings on one host (different files and ports, the same host
/// name): the second one's start and stop leave the first one's containers running, and its
/// sessions answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_default_berths_on_one_docker_host_never_touch_each_others_containers() {
    if !docker_ready(&["fixture"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [first, second] = [unique_name("first"), unique_name("second")];
    let _cleanup =
        RemoveContainers([&first, &second].iter().flat_map(|n| [backend(n), backend(&format!("{n}-solo"))]).collect());
    let mut berths = Vec::new();
    for name in [&first, &second] {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, fixture_backend(name, "")).unwrap();
        let served = serve(&config, free_port(), "berth-host", &dir.path().join(format!("{name}.log"))).await;
        let mut sessions = Vec::new();
        for route in [name.clone(), format!("{name}-solo")] {
            let session = RawSession::open(&format!("http://{}/{route}/mcp", served.addr), json!({})).await;
            assert_eq!(session.tool("echo", json!({"text": "hello"})).await, "hello", "{route}");
            sessions.push(session);
        }
        berths.push((served, sessions));
    }
    let (mut second_berth, _) = berths.pop().unwrap();
    let (mut first_berth, first_sessions) = berths.pop().unwrap();
    let first_containers = || {
        let mut ids = running_with(&backend(&first));
        ids.extend(running_with(&backend(&format!("{first}-solo"))));
        ids
    };
    let before = first_containers();
    assert_eq!(before.len(), 2, "the first berth's shared and per-session containers run");
    assert_eq!(running_with(&backend(&second)).len(), 1, "the second berth's containers run");

    terminate(&mut second_berth).await;
    assert!(containers_with(&backend(&second)).is_empty(), "the second berth removed its own containers");
    assert!(containers_with(&backend(&format!("{second}-solo"))).is_empty());
    assert_eq!(first_containers(), before, "the first berth's containers still run, the same ones");
    for session in &first_sessions {
        assert_eq!(session.tool("echo", json!({"text": "still here"})).await, "still here", "{}", session.url);
    }
    terminate(&mut first_berth).await;
    assert!(first_containers().is_empty());
}

/// A berth killed with SIGKILL while its container runs on (a server that lingers after its
/// stdin closed), restarted with the same file and address under another host name, as Compose
/// recreates a container: the new berth removes the old container at start-up, and leaves alone
/// the running leftover of another deployment killed the same way on the same host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_berth_restarted_after_sigkill_under_a_new_docker_host_name_sweeps_only_its_own_leftovers() {
    if !docker_ready(&["fixture"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [ours, theirs] = [unique_name("ours"), unique_name("theirs")];
    let _cleanup =
        RemoveContainers([&ours, &theirs].iter().flat_map(|n| [backend(n), backend(&format!("{n}-solo"))]).collect());
    // The server lingers ten minutes after its stdin closed: only berth can remove it.
    let linger = "env = { FIXTURE_EXIT_DELAY_MS = \"600000\" }\nstop_grace = \"1s\"";
    let config = |name: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, fixture_backend(name, linger)).unwrap();
        path
    };
    let (ours_config, theirs_config) = (config(&ours), config(&theirs));
    let port = free_port();

    let mut killed_theirs = serve(&theirs_config, free_port(), "c0ffee000001", &dir.path().join("theirs.log")).await;
    let mut killed_ours = serve(&ours_config, port, "c0ffee000001", &dir.path().join("ours-1.log")).await;
    wait_until("both eager containers run", || {
        running_with(&backend(&ours)).len() == 1 && running_with(&backend(&theirs)).len() == 1
    })
    .await;
    let [left_ours, left_theirs] = [running_with(&backend(&ours)), running_with(&backend(&theirs))];
    killed_theirs.child.kill().await.unwrap();
    killed_ours.child.kill().await.unwrap();
    assert_eq!(running_with(&backend(&ours)), left_ours, "the killed berth's container runs on");

    let mut restarted = serve(&ours_config, port, "c0ffee000002", &dir.path().join("ours-2.log")).await;
    wait_until("the predecessor's container is removed", || {
        !containers_with(&backend(&ours)).iter().any(|id| left_ours.contains(id))
    })
    .await;
    wait_until("the restarted berth's container runs", || running_with(&backend(&ours)).len() == 1).await;
    let log = std::fs::read_to_string(&restarted.log).unwrap();
    assert!(log.contains("reason=DeadRun"), "removed because its berth is dead, not because it exited:\n{log}");
    let session = RawSession::open(&format!("http://{}/{ours}/mcp", restarted.addr), json!({})).await;
    assert_eq!(session.tool("echo", json!({"text": "again"})).await, "again");
    assert_eq!(running_with(&backend(&theirs)), left_theirs, "another deployment's leftover is untouched");

    terminate(&mut restarted).await;
    assert!(containers_with(&backend(&ours)).is_empty(), "a clean stop removes its containers");
    assert_eq!(running_with(&backend(&theirs)), left_theirs, "and still leaves the other deployment's alone");
}
