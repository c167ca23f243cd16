//! Stdio backends in Docker containers, against a real engine: the conformance suite, crashes,
//! leaks, and a berth killed with SIGKILL; servers exec'd in a running container (`exec.rs`).
//! The images are built offline by `scripts/build-test-images.sh`; containers run with berth's
//! hardened defaults (no network, read-only root, no capabilities, nobody).

mod exec;
mod ownership;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    conformance::run_suite,
    harness::{
        Berth, config_with, containers_of, containers_with, docker_ready, engine_answers, http, repo_root,
        shared_and_per_session, unique_name,
    },
    process::{Served, berth_command},
    raw::{RawSession, churn_sessions},
    wait::{poll, wait_until, wait_until_async},
};

/// The fixture image as `fxd` (shared) and `fxd-solo` (per-session).
fn fixture_config() -> String {
    config_with(&shared_and_per_session(["fxd", "fxd-solo"], "kind = \"docker\"\nimage = \"berth-test/fixture:dev\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_suite_passes_through_docker_backends() {
    if !docker_ready(&["conformance"]) {
        return;
    }
    let config = config_with(&format!(
        "[server]\npublic_hosts = [\"mcp.example.com\"]\n\n{}",
        shared_and_per_session(
            ["docker-shared", "docker-session"],
            "kind = \"docker\"\nimage = \"berth-test/conformance:dev\""
        )
    ));
    let mut report = run_suite(&config, "docker-shared").await;
    report.extend(run_suite(&config, "docker-session").await);
    println!("{}", report.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_pass_everything_through_and_survive_a_kill() {
    if !docker_ready(&["fixture"]) {
        return;
    }
    let berth = Berth::start(&fixture_config()).await;
    for backend in ["fxd", "fxd-solo"] {
        let session = RawSession::open(&berth.mcp_url(backend), json!({})).await;
        assert_eq!(session.init["result"]["x-extra-init"], "kept");
        let custom = session.request(json!("c"), "x/echo", json!({"x-extra-param": 1})).await;
        assert_eq!(custom["result"]["echo"]["x-extra-param"], 1, "{custom}");
        let before = containers_of(&berth.deployment);
        assert!(!before.is_empty());
        let slow = json!({"jsonrpc": "2.0", "id": "slow", "method": "tools/call",
            "params": {"name": "slow", "arguments": {"ms": 600_000}}});
        let pending = session.spawn_request(slow);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let backend_label = format!("berth.backend={backend}");
        let victims: Vec<String> = containers_with(&backend_label).into_iter().filter(|c| before.contains(c)).collect();
        assert_eq!(victims.len(), 1, "{backend}: {victims:?}");
        assert!(Command::new("docker").args(["kill", &victims[0]]).status().unwrap().success());
        let failed = tokio::time::timeout(Duration::from_secs(30), pending).await.expect("no hang").unwrap();
        assert_eq!(failed["error"]["code"], -32000, "{backend}: {failed}");
        assert_eq!(session.tool("echo", json!({"text": "again"})).await, "again", "{backend}: restarted");
        let killed = victims[0].clone();
        wait_until("the killed container is removed", || !containers_of(&berth.deployment).contains(&killed)).await;
        assert_eq!(session.delete().await, StatusCode::OK);
    }
    let deployment = berth.deployment.clone();
    berth.stop().await;
    assert!(containers_of(&deployment).is_empty(), "shutdown removes every container");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sessions_leave_no_container_behind() {
    if !docker_ready(&["fixture"]) {
        return;
    }
    let berth = Berth::start(&fixture_config()).await;
    let deployment = berth.deployment.clone();
    for backend in ["fxd", "fxd-solo"] {
        churn_sessions(&berth.mcp_url(backend)).await;
    }
    // The shared instance's container stays while berth runs; per-session ones are removed.
    wait_until("only the shared container is left", || containers_of(&deployment).len() <= 1).await;
    berth.stop().await;
    assert!(containers_of(&deployment).is_empty(), "shutdown removes every container");
}

/// `kill -9` gives berth no chance to clean up; the next start under the same name must
/// remove what the first left behind.
#[tokio::test]
async fn a_berth_killed_with_sigkill_leaves_no_container_after_restart() {
    if !docker_ready(&["fixture"]) {
        return;
    }
    let deployment = unique_name("sigkill");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        "auth = \"none\"\n[backends.fx]\nkind = \"docker\"\nimage = \"berth-test/fixture:dev\"\nstart = \"eager\"\n",
    )
    .unwrap();
    let start = |log: &str| {
        let mut command = berth_command();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("BERTH_INSTANCE_NAME", &deployment);
        Served::spawn(command, dir.path().join(log))
    };
    let mut first = start("first.log").await;
    wait_until("the eager container runs", || !containers_of(&deployment).is_empty()).await;
    let left = containers_of(&deployment);
    first.child.kill().await.unwrap();
    let mut second = start("second.log").await;
    wait_until("the first run's container is removed", || {
        let now = containers_of(&deployment);
        !left.iter().any(|c| now.contains(c))
    })
    .await;
    wait_until("the second run's container runs", || !containers_of(&deployment).is_empty()).await;
    let pid = second.child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(second.child.wait().await.unwrap().code(), Some(0));
    assert!(containers_of(&deployment).is_empty(), "a clean stop removes its containers");
}

/// The engine itself stops and starts again. It runs only where the test may restart the
/// engine (`BERTH_ENGINE_RESTART=1`, set by `.ci/run`, which started the engine itself), and
/// alone: `scripts/test` runs it after every other test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_restart_is_survived() {
    if std::env::var("BERTH_ENGINE_RESTART").as_deref() != Ok("1") || !docker_ready(&["fixture"]) {
        eprintln!("BERTH_ENGINE_RESTART is not 1: not restarting this machine's Docker engine");
        return;
    }
    let berth = Berth::start(&config_with(
        "[backends.fxd]\nkind = \"docker\"\nimage = \"berth-test/fixture:dev\"\nrequired = true\nstart = \"eager\"\n",
    ))
    .await;
    let session = RawSession::open(&berth.mcp_url("fxd"), json!({})).await;
    assert_eq!(session.tool("echo", json!({"text": "before"})).await, "before");
    assert!(Command::new("pkill").args(["-TERM", "-x", "dockerd"]).status().unwrap().success());
    wait_until("the engine is down", || !engine_answers()).await;
    let dockerd_running =
        || Command::new("pgrep").args(["-x", "dockerd"]).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    let client = http();
    let readiness = || async { client.get(berth.url("/readyz")).send().await.unwrap().status() };
    let not_ready = poll(Duration::from_secs(10), || async {
        let status = readiness().await;
        if status == StatusCode::SERVICE_UNAVAILABLE { Ok(()) } else { Err(status) }
    })
    .await;
    assert!(not_ready.is_ok(), "a docker backend is not ready while the engine is away: {not_ready:?}");
    wait_until("the engine process has exited", || !dockerd_running()).await;
    assert!(Command::new("bash").arg(repo_root().join("scripts/start-dockerd.sh")).status().unwrap().success());
    wait_until_async("berth is ready again once the engine answers", || async { readiness().await == StatusCode::OK })
        .await;
    // The engine took the old container down with it; the same session gets a new one.
    assert_eq!(session.tool("echo", json!({"text": "after"})).await, "after");
    let deployment = berth.deployment.clone();
    berth.stop().await;
    // Including the one the engine stopped while it was away.
    wait_until("no container is left", || containers_of(&deployment).is_empty()).await;
}
