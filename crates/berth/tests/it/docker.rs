//! Stdio backends in Docker containers, against a real engine: the conformance suite, crashes,
//! leaks, and a berth killed with SIGKILL. The images are built offline by
//! `scripts/build-test-images.sh`; containers run with berth's hardened defaults
//! (no network, read-only root, no capabilities, nobody).

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    conformance::run_suite,
    harness::{
        Berth, build_test_images, config_with, containers_with, docker_available, http, unique_name, wait_until,
    },
    raw::{RawSession, churn_sessions},
};

fn fixture_config(extra: &str) -> String {
    config_with(&format!(
        "[backends.fxd]\nkind = \"docker\"\nimage = \"berth-test/fixture:dev\"\n{extra}\n\
         [backends.fxd-solo]\nkind = \"docker\"\nimage = \"berth-test/fixture:dev\"\nsharing = \"per-session\"\n{extra}\n"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_suite_passes_through_docker_backends() {
    if !docker_available() {
        return;
    }
    build_test_images(&["conformance"]);
    let config = config_with(
        "[server]\npublic_hosts = [\"mcp.example.com\"]\n\
         [backends.docker-shared]\nkind = \"docker\"\nimage = \"berth-test/conformance:dev\"\n\
         [backends.docker-session]\nkind = \"docker\"\nimage = \"berth-test/conformance:dev\"\nsharing = \"per-session\"\n",
    );
    let mut report = run_suite(&config, "docker-shared").await;
    report.extend(run_suite(&config, "docker-session").await);
    println!("{}", report.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_pass_everything_through_and_survive_a_kill() {
    if !docker_available() {
        return;
    }
    build_test_images(&["fixture"]);
    let berth = Berth::start(&fixture_config("")).await;
    for backend in ["fxd", "fxd-solo"] {
        let session = RawSession::open(&berth.url(&format!("/{backend}/mcp")), json!({})).await;
        assert_eq!(session.init["result"]["x-extra-init"], "kept");
        let custom = session.request(json!("c"), "x/echo", json!({"x-extra-param": 1})).await;
        assert_eq!(custom["result"]["echo"]["x-extra-param"], 1, "{custom}");
        let label = format!("berth.owner={}", berth.owner);
        let before = containers_with(&label);
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
        wait_until("the killed container is removed", || !containers_with(&label).contains(&killed)).await;
        assert_eq!(session.delete().await, StatusCode::OK);
    }
    let label = format!("berth.owner={}", berth.owner);
    berth.stop().await;
    assert!(containers_with(&label).is_empty(), "shutdown removes every container");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sessions_leave_no_container_behind() {
    if !docker_available() {
        return;
    }
    build_test_images(&["fixture"]);
    let berth = Berth::start(&fixture_config("")).await;
    let label = format!("berth.owner={}", berth.owner);
    for backend in ["fxd", "fxd-solo"] {
        churn_sessions(&berth.url(&format!("/{backend}/mcp"))).await;
    }
    // The shared instance's container stays while berth runs; per-session ones are removed.
    wait_until("only the shared container is left", || containers_with(&label).len() <= 1).await;
    berth.stop().await;
    assert!(containers_with(&label).is_empty(), "shutdown removes every container");
}

/// `kill -9` gives berth no chance to clean up; the next start under the same name must
/// remove what the first left behind.
#[tokio::test]
async fn a_berth_killed_with_sigkill_leaves_no_container_after_restart() {
    if !docker_available() {
        return;
    }
    build_test_images(&["fixture"]);
    let owner = unique_name("sigkill");
    let label = format!("berth.owner={owner}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        "auth = \"none\"\n[backends.fx]\nkind = \"docker\"\nimage = \"berth-test/fixture:dev\"\nstart = \"eager\"\n",
    )
    .unwrap();
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("BERTH_INSTANCE_NAME", &owner)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
        child
    };
    let mut first = start();
    wait_until("the eager container runs", || !containers_with(&label).is_empty()).await;
    let left = containers_with(&label);
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = start();
    wait_until("the first run's container is removed", || {
        let now = containers_with(&label);
        !left.iter().any(|c| now.contains(c))
    })
    .await;
    wait_until("the second run's container runs", || !containers_with(&label).is_empty()).await;
    assert!(Command::new("kill").args(["-TERM", &second.id().to_string()]).status().unwrap().success());
    assert_eq!(second.wait().unwrap().code(), Some(0));
    assert!(containers_with(&label).is_empty(), "a clean stop removes its containers");
}

/// The engine itself stops and starts again. It runs only where the test may restart the
/// engine (`BERTH_ENGINE_RESTART=1`, set by `.ci/run`, which started the engine itself), and
/// alone: `scripts/test` runs it after every other test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_restart_is_survived() {
    if std::env::var("BERTH_ENGINE_RESTART").as_deref() != Ok("1") || !docker_available() {
        eprintln!("BERTH_ENGINE_RESTART is not 1: not restarting this machine's Docker engine");
        return;
    }
    build_test_images(&["fixture"]);
    let berth = Berth::start(&config_with(
        "[backends.fxd]\nkind = \"docker\"\nimage = \"berth-test/fixture:dev\"\nrequired = true\nstart = \"eager\"\n",
    ))
    .await;
    let session = RawSession::open(&berth.url("/fxd/mcp"), json!({})).await;
    assert_eq!(session.tool("echo", json!({"text": "before"})).await, "before");
    let engine_up = || {
        Command::new("docker")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(Command::new("pkill").args(["-TERM", "-x", "dockerd"]).status().unwrap().success());
    wait_until("the engine is down", || !engine_up()).await;
    let dockerd_running =
        || Command::new("pgrep").args(["-x", "dockerd"]).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    let client = http();
    let mut not_ready = false;
    for _ in 0..100 {
        let ready = client.get(berth.url("/readyz")).send().await.unwrap();
        if ready.status() == StatusCode::SERVICE_UNAVAILABLE {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(not_ready, "a docker backend is not ready while the engine is away");
    wait_until("the engine process has exited", || !dockerd_running()).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    assert!(Command::new("bash").arg(root.join("scripts/start-dockerd.sh")).status().unwrap().success());
    let mut ready = false;
    for _ in 0..600 {
        if client.get(berth.url("/readyz")).send().await.unwrap().status() == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again once the engine answers");
    // The engine took the old container down with it; the same session gets a new one.
    assert_eq!(session.tool("echo", json!({"text": "after"})).await, "after");
    let label = format!("berth.owner={}", berth.owner);
    berth.stop().await;
    // Including the one the engine stopped while it was away.
    wait_until("no container is left", || containers_with(&label).is_empty()).await;
}
