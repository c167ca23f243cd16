//! Creation errors, exits, stops, orphans and the engine's health.

use std::time::Duration;

use berth_docker::{DockerError, Owner, ProcessMark, Run, Sweep};

use crate::support::{CONFORMANCE, Cleanup, EVERYTHING, containers_of, docker, exists, hardened, setup, wait_until};

/// An image the engine does not have, with pulling not allowed, is a clear error and leaves no
/// container behind.
#[tokio::test]
async fn missing_image_is_a_clear_error() {
    let Some((owner, engine, _cleanup)) = setup("missing", &[]).await else {
        return;
    };

    let spec = hardened(&owner, "berth-test/absent:never");
    let error = engine.run(&spec).await.err().expect("run succeeded without an image");
    assert!(matches!(error, DockerError::ImageMissing { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("berth-test/absent:never") && message.contains("image_pull"), "{message}");
    assert!(containers_of(&docker().await, &owner).await.is_empty());
}

/// A server that exits by itself is reported with its exit code, and stop() still removes it.
#[tokio::test]
async fn exit_of_its_own_is_reported() {
    let Some((owner, engine, _cleanup)) = setup("exit", &[EVERYTHING]).await else {
        return;
    };

    let mut spec = hardened(&owner, EVERYTHING);
    spec.template.entrypoint = Some(vec!["/usr/local/bin/node".into()]);
    spec.template.command = Some(vec!["-e".into(), "process.exit(3)".into()]);
    let mut container = engine.run(&spec).await.unwrap().container;
    assert_eq!(container.exited().await, "exited with code 3");
    // Asking again answers the same.
    assert_eq!(container.exited().await, "exited with code 3");
    let id = container.id().to_owned();
    container.stop(Duration::from_secs(1)).await;
    assert!(!exists(&docker().await, &id).await);
}

/// A server that keeps running (its stdin still open) is stopped by signal and removed.
#[tokio::test]
async fn stop_removes_a_running_container() {
    let Some((owner, engine, _cleanup)) = setup("stop", &[CONFORMANCE]).await else {
        return;
    };
    let docker = docker().await;

    let attached = engine.run(&hardened(&owner, CONFORMANCE)).await.unwrap();
    let id = attached.container.id().to_owned();
    assert!(exists(&docker, &id).await);
    // stdin stays open: the server has no reason to exit before the stop signal.
    attached.container.stop(Duration::from_secs(1)).await;
    assert!(!exists(&docker, &id).await, "container {id} still exists after stop()");
    drop(attached.stdin);
}

/// A container dropped without stop() is removed anyway.
#[tokio::test]
async fn dropped_container_is_removed() {
    let Some((owner, engine, _cleanup)) = setup("dropped", &[CONFORMANCE]).await else {
        return;
    };
    let docker = docker().await;

    let attached = engine.run(&hardened(&owner, CONFORMANCE)).await.unwrap();
    drop(attached);
    // The removal runs in the background: poll until it is done (bounded, not a timing check).
    wait_until("the dropped container is removed", Duration::from_secs(30), || async {
        containers_of(&docker, &owner).await.is_empty()
    })
    .await;
}

/// A sweep removes, of its own deployment, the containers of provably dead runs and those that
/// exited while no live run is known to use them; at the end, its own run's too. Containers of
/// live runs and of other deployments stay.
#[tokio::test]
async fn a_sweep_removes_only_containers_nobody_uses() {
    let Some((deployment, engine, _cleanup)) = setup("sweep", &[CONFORMANCE]).await else {
        return;
    };
    let other = format!("{deployment}-other");
    let _cleanup_other = Cleanup::new(&[&other]);
    let docker = docker().await;
    let here = ProcessMark::current().expect("/proc answers");
    let run = |id: &str, process: ProcessMark| Run {
        id: format!("{deployment}-{id}"),
        container: None,
        process: Some(process),
    };
    let me = Owner::new(&deployment, run("me", here.clone()));
    // Another run in this very process (alive), one whose pid is now another process's (dead),
    // and one on another machine (unknown).
    let live = run("live", here.clone());
    let reused = run("reused", ProcessMark { start: here.start + 1, ..here.clone() });
    let elsewhere = run("elsewhere", ProcessMark { namespace: "another-boot/pid:[1]".to_owned(), ..here.clone() });

    // Running containers, their stdin kept open (a closed stdin makes the server exit).
    let mut stdins = Vec::new();
    let mut start = async |owner: Owner| {
        let mut spec = hardened(&deployment, CONFORMANCE);
        spec.owner = owner;
        let attached = engine.run(&spec).await.unwrap();
        stdins.push(attached.stdin);
        let id = attached.container.id().to_owned();
        std::mem::forget(attached.container);
        id
    };
    let mine = start(me.clone()).await;
    let of_live = start(Owner::new(&deployment, live)).await;
    let of_reused = start(Owner::new(&deployment, reused.clone())).await;
    let of_elsewhere = start(Owner::new(&deployment, elsewhere.clone())).await;
    let foreign = start(Owner::new(&other, reused)).await;
    // One that exited: its stdin closed.
    let mut spec = hardened(&deployment, CONFORMANCE);
    spec.owner = Owner::new(&deployment, elsewhere);
    let mut exited = engine.run(&spec).await.unwrap();
    drop(exited.stdin);
    exited.container.exited().await;
    let of_elsewhere_exited = exited.container.id().to_owned();
    std::mem::forget(exited.container);

    assert_eq!(engine.sweep(&me, Sweep::Running).await.unwrap(), 2);
    assert!(!exists(&docker, &of_reused).await, "a dead run's container stays");
    assert!(!exists(&docker, &of_elsewhere_exited).await, "an exited container of an unknown run stays");
    for (kept, what) in [
        (&mine, "this run's own"),
        (&of_live, "a live run's"),
        (&of_elsewhere, "a running one of a run on another machine"),
        (&foreign, "another deployment's"),
    ] {
        assert!(exists(&docker, kept).await, "{what} container was removed");
    }
    assert_eq!(engine.sweep(&me, Sweep::Final).await.unwrap(), 1);
    assert!(!exists(&docker, &mine).await, "the final sweep removes this run's containers");
    assert!(exists(&docker, &of_live).await && exists(&docker, &foreign).await);
}
