//! Execs in a container that runs already: an MCP session, both ways of stopping one, and the
//! errors for a container that is missing or stopped and a command that is not there.

use std::time::Duration;

use berth_docker::{ContainerState, DockerError, Engine, ExecSpec, ExecTemplate};
use bollard::Docker;
use nix::sys::signal::Signal;
use tokio::io::AsyncWriteExt;

use crate::support::{EVERYTHING, Lines, NODE_BASE, docker, hardened, line, send_handshake, setup, wait_until};

/// server-everything's stdio entry point in [`EVERYTHING`].
const EVERYTHING_STDIO: &str = "/app/node_modules/@modelcontextprotocol/server-everything/dist/index.js";

/// Starts a long-lived container of `image` that idles (node, which both images have), as a
/// container of the deployment `owner` (removed by its `Cleanup`); answers its id.
async fn idle_container(engine: &Engine, owner: &str, image: &str) -> String {
    let mut spec = hardened(owner, image);
    spec.template.entrypoint = Some(vec!["/usr/local/bin/node".into()]);
    spec.template.command = Some(vec!["-e".into(), "setInterval(() => {}, 1 << 30)".into()]);
    let attached = engine.run(&spec).await.unwrap();
    let id = attached.container.id().to_owned();
    // The container lives until the test's Cleanup removes it; its handle must not remove it.
    std::mem::forget(attached.container);
    id
}

/// The pids `docker top` lists in the container.
async fn top(docker: &Docker, container: &str) -> Vec<String> {
    let top = docker.top_processes(container, None::<bollard::query_parameters::TopOptions>).await.unwrap();
    let titles = top.titles.unwrap_or_default();
    let pid = titles.iter().position(|t| t == "PID").unwrap();
    top.processes.unwrap_or_default().into_iter().map(|row| row[pid].clone()).collect()
}

fn exec_of(container: &str, command: &[&str]) -> ExecSpec {
    ExecSpec {
        template: ExecTemplate {
            container: container.to_owned(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            user: None,
            workdir: None,
        },
        env: vec!["BERTH_TEST=1".to_owned()],
    }
}

/// A real MCP server runs in the container, answers initialize, and after stop() (its stdin
/// closed, then a signal on the host) the container runs only what it ran before.
#[tokio::test]
async fn an_exec_serves_a_session_and_stop_leaves_nothing() {
    let Some((owner, engine, _cleanup)) = setup("exec-session", &[EVERYTHING]).await else {
        return;
    };
    let docker = docker().await;
    let container = idle_container(&engine, &owner, EVERYTHING).await;
    let before = top(&docker, &container).await;

    let mut attached = engine.exec(&exec_of(&container, &["node", EVERYTHING_STDIO, "stdio"])).await.unwrap();
    assert_ne!(attached.exec.pid(), 0);
    send_handshake(&mut attached.stdin).await;
    let mut stdout = Lines::new(attached.stdout);
    let answer = stdout.response(1).await;
    assert!(answer["result"]["serverInfo"]["name"].is_string(), "{answer}");
    let list = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    attached.stdin.write_all(&line(&list)).await.unwrap();
    assert!(stdout.response(2).await["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()));
    assert_eq!(top(&docker, &container).await.len(), before.len() + 1);

    drop(attached.stdin);
    attached.exec.stop(Duration::from_millis(500)).await;
    wait_until("the exec's process is gone", Duration::from_secs(10), || async {
        top(&docker, &container).await == before
    })
    .await;
}

/// From inside the container (the way for a berth that cannot see the host's pids): every
/// process carrying the exec's marker gets the signal, the exec's child too; SIGKILL ends one
/// that ignores SIGTERM.
#[tokio::test]
async fn an_exec_is_killed_from_inside_the_container() {
    let Some((owner, engine, _cleanup)) = setup("exec-inside", &[NODE_BASE]).await else {
        return;
    };
    let docker = docker().await;
    let container = idle_container(&engine, &owner, NODE_BASE).await;
    let before = top(&docker, &container).await;

    // A child with SIGTERM's default action, then a shell that ignores it and waits on stdin.
    let script = "node -e 'setInterval(() => {}, 1e9)' & trap '' TERM; read line";
    let mut attached = engine.exec(&exec_of(&container, &["sh", "-c", script])).await.unwrap();
    wait_until("the exec and its child run", Duration::from_secs(20), || async {
        top(&docker, &container).await.len() >= before.len() + 2
    })
    .await;
    attached.exec.signal_in_container(Signal::SIGTERM).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The shell ignores SIGTERM; its child did not.
    assert_eq!(top(&docker, &container).await.len(), before.len() + 1);
    attached.exec.signal_in_container(Signal::SIGKILL).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), attached.exec.exited()).await.expect("it ends");
    assert_eq!(top(&docker, &container).await, before);
    attached.exec.stop(Duration::ZERO).await;
}

/// What an exec cannot start in is a clear error naming the container.
#[tokio::test]
async fn missing_and_stopped_containers_and_commands_are_clear_errors() {
    let Some((owner, engine, _cleanup)) = setup("exec-errors", &[EVERYTHING]).await else {
        return;
    };
    let docker = docker().await;
    let absent = format!("{owner}-absent");
    assert_eq!(engine.container_state(&absent).await.unwrap(), ContainerState::Missing);
    let error = engine.exec(&exec_of(&absent, &["node"])).await.err().unwrap();
    assert!(matches!(error, DockerError::ContainerMissing { .. }), "{error:?}");
    assert!(error.to_string().contains(&absent), "{error}");

    let container = idle_container(&engine, &owner, EVERYTHING).await;
    assert_eq!(engine.container_state(&container).await.unwrap(), ContainerState::Running);
    let error = engine.exec(&exec_of(&container, &["no-such-program"])).await.err().unwrap();
    assert!(matches!(error, DockerError::ExecFailed { .. }), "{error:?}");
    assert!(error.to_string().contains("`no-such-program`"), "{error}");

    docker.stop_container(&container, None::<bollard::query_parameters::StopContainerOptions>).await.unwrap();
    let state = engine.container_state(&container).await.unwrap();
    assert_eq!(state, ContainerState::NotRunning("exited".into()));
    let error = engine.exec(&exec_of(&container, &["node"])).await.err().unwrap();
    assert!(matches!(error, DockerError::ContainerNotRunning { .. }), "{error}");
    assert!(error.to_string().contains("exited"), "{error}");
}

/// An exec that ignores the end of its stdin is signalled: on the host when its pid is visible
/// there (as it is to these tests), in the container otherwise. Either way it is gone after
/// stop(), and so is its child.
#[tokio::test]
async fn stop_kills_an_exec_that_ignores_its_stdin() {
    let Some((owner, engine, _cleanup)) = setup("exec-stop", &[NODE_BASE]).await else {
        return;
    };
    let docker = docker().await;
    let container = idle_container(&engine, &owner, NODE_BASE).await;
    let before = top(&docker, &container).await;
    let script = "node -e 'setInterval(() => {}, 1e9)' & node -e 'setInterval(() => {}, 1e9)'";
    let attached = engine.exec(&exec_of(&container, &["sh", "-c", script])).await.unwrap();
    wait_until("the exec and its child run", Duration::from_secs(20), || async {
        top(&docker, &container).await.len() >= before.len() + 2
    })
    .await;
    drop(attached.stdin);
    attached.exec.stop(Duration::from_millis(200)).await;
    assert_eq!(top(&docker, &container).await, before);
}
