//! `kind = "docker-exec"`: server-everything started in a long-lived container of
//! `berth-test/everything:dev` that idles, through real MCP clients; no exec process left behind
//! (counted with `docker top`) after 50 per-session sessions or after berth stops; a missing or
//! stopped container makes the backend not ready, with the reason, until it runs again.

use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    admin::admin_json,
    everything::{SHARED_ROOTS, rmcp_sessions},
    harness::{Berth, USER, alice, config_with, docker_ready, http, shared_and_per_session, unique_name},
    page::cell,
    raw::RawSession,
    wait::{wait_for, wait_until, wait_until_async},
};

/// server-everything's stdio entry point in the image.
const EVERYTHING_STDIO: &str = "/app/node_modules/@modelcontextprotocol/server-everything/dist/index.js";

/// A long-lived container of the everything image that idles, named uniquely per test, removed
/// when dropped (the test passed or not).
struct IdleContainer {
    name: String,
}

impl IdleContainer {
    /// A name for a container that does not exist yet.
    fn named() -> Self {
        Self { name: unique_name("berth-exec-test") }
    }

    /// Creates and starts it.
    fn run(&self) {
        docker(&[
            "run",
            "-d",
            "--name",
            &self.name,
            "--network",
            "none",
            "berth-test/everything:dev",
            "/usr/local/bin/node",
            "-e",
            "setInterval(() => {}, 1 << 30)",
        ]);
    }

    /// The pids `docker top` lists in it.
    fn top(&self) -> Vec<String> {
        let output = Command::new("docker").args(["top", &self.name, "-o", "pid"]).output().unwrap();
        assert!(output.status.success(), "docker top {}: {}", self.name, String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).lines().skip(1).map(|l| l.trim().to_owned()).collect()
    }
}

impl Drop for IdleContainer {
    fn drop(&mut self) {
        let _ =
            Command::new("docker").args(["rm", "-f", &self.name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn docker(args: &[&str]) {
    let output = Command::new("docker").args(args).output().unwrap();
    assert!(output.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// The backend's keys: server-everything exec'd in `container`.
fn exec_backend(container: &str) -> String {
    format!(
        "kind = \"docker-exec\"\ncontainer = \"{container}\"\ncommand = \"node\"\nargs = [\"{EVERYTHING_STDIO}\", \"stdio\"]\n"
    )
}

/// rmcp's client runs a full session (tools listed and called, sampling, elicitation, roots,
/// progress, resources, prompts) through a shared and a per-session docker-exec backend; after
/// berth stops, the container runs only what it ran before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_sessions_through_shared_and_per_session_execs() {
    if !docker_ready(&["everything"]) {
        return;
    }
    let container = IdleContainer::named();
    container.run();
    let before = container.top();
    let backend = format!("{}{SHARED_ROOTS}", exec_backend(&container.name));
    let routes = ["every-exec", "every-exec-solo"];
    rmcp_sessions(&config_with(&shared_and_per_session(routes, &backend)), routes).await;
    assert_eq!(container.top(), before, "stopping berth leaves no exec process in the container");
}

/// The leak test: 50 per-session sessions, each opened, called and ended with DELETE, leave no
/// extra process in the container; nor does the shared instance once berth stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_per_session_execs_leave_no_process_behind() {
    if !docker_ready(&["everything"]) {
        return;
    }
    let container = IdleContainer::named();
    container.run();
    let before = container.top();
    let backend = exec_backend(&container.name);
    let berth = Berth::start(&config_with(&shared_and_per_session(["ex", "ex-solo"], &backend))).await;
    let shared = RawSession::open(&berth.mcp_url("ex"), json!({})).await;
    assert_eq!(shared.tool("echo", json!({"message": "shared"})).await, "Echo: shared");
    assert_eq!(container.top().len(), before.len() + 1, "one exec for the shared instance");
    let solo = berth.mcp_url("ex-solo");
    for round in 0..5 {
        let sessions: Vec<RawSession> =
            futures::future::join_all((0..10).map(|_| RawSession::open(&solo, json!({})))).await;
        assert_eq!(container.top().len(), before.len() + 11, "round {round}: one exec per session, and the shared one");
        for session in &sessions {
            assert_eq!(session.tool("echo", json!({"message": "x"})).await, "Echo: x", "round {round}");
            assert_eq!(session.delete().await, StatusCode::OK);
        }
    }
    wait_until("only the shared instance's exec is left", || container.top().len() == before.len() + 1).await;
    berth.stop().await;
    assert_eq!(container.top(), before, "stopping berth leaves no exec process in the container");
}

/// `GET /readyz`'s status and body.
async fn readyz(berth: &Berth) -> (StatusCode, Value) {
    let answer = http().get(berth.url("/readyz")).send().await.unwrap();
    (answer.status(), answer.json().await.unwrap())
}

/// A required backend whose container does not exist yet is not ready (`/readyz`, the admin
/// API, and a session's initialize, each naming the container); once the container is created
/// it becomes ready and serves; when the container stops it is not ready again, and ready when
/// it is started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_stopped_container_is_not_ready_until_it_runs() {
    if !docker_ready(&["everything"]) {
        return;
    }
    let container = IdleContainer::named();
    let backends = format!(
        "[backends.ex]\n{}required = true\n\n[backends.ex-solo]\n{}sharing = \"per-session\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\nusers = [\"{USER}\"]\n",
        exec_backend(&container.name),
        exec_backend(&container.name)
    );
    let berth = Berth::start(&config_with(&backends)).await;
    let (status, body) = readyz(&berth).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["not_ready"], json!(["ex"]), "{body}");
    let unavailable = wait_for("the admin API names the missing container", || async {
        admin_json(&berth, "/api/backends/ex").await["unavailable"].as_str().map(str::to_owned)
    })
    .await;
    assert!(unavailable.contains(&container.name) && unavailable.contains("does not exist"), "{unavailable}");
    // The status page says why, in the backend's Ready cell.
    let page = http().get(berth.admin_url("/")).header("authorization", alice()).send().await.unwrap();
    let ready = cell(&page.text().await.unwrap(), "ex", "ready");
    assert!(ready.starts_with("no") && ready.contains(&container.name), "{ready}");
    let (status, body) = RawSession::try_open(&berth.mcp_url("ex-solo"), json!({})).await.err().expect("no session");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&container.name) && message.contains("does not exist"), "{body}");

    container.run();
    wait_until_async("the backend is ready once the container runs", || async {
        readyz(&berth).await.0 == StatusCode::OK
    })
    .await;
    for route in ["ex", "ex-solo"] {
        let session = RawSession::open(&berth.mcp_url(route), json!({})).await;
        assert_eq!(session.tool("echo", json!({"message": route})).await, format!("Echo: {route}"));
        assert_eq!(session.delete().await, StatusCode::OK);
    }
    assert!(admin_json(&berth, "/api/backends/ex").await.get("unavailable").is_none());

    docker(&["stop", "-t", "0", &container.name]);
    wait_until_async("the backend is not ready once the container stopped", || async {
        readyz(&berth).await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let unavailable = wait_for("the admin API says the container does not run", || async {
        admin_json(&berth, "/api/backends/ex").await["unavailable"].as_str().map(str::to_owned)
    })
    .await;
    assert!(unavailable.contains(&container.name) && unavailable.contains("is not running"), "{unavailable}");

    docker(&["start", &container.name]);
    wait_until_async("the backend is ready again once the container runs again", || async {
        readyz(&berth).await.0 == StatusCode::OK
    })
    .await;
    let session = RawSession::open(&berth.mcp_url("ex"), json!({})).await;
    assert_eq!(session.tool("echo", json!({"message": "back"})).await, "Echo: back");
    let before_stop = container.top().len();
    assert!(before_stop >= 2, "the idle process and the shared exec: {:?}", container.top());
    berth.stop().await;
    assert_eq!(container.top().len(), 1, "stopping berth leaves only the container's own process");
}
