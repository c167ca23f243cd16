//! Creation errors, exits, stops, orphans and the engine's health.

use std::collections::HashMap;
use std::time::Duration;

use berth_docker::DockerError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;

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

/// reap_orphans removes this owner's labelled containers, running or not, and leaves other
/// owners' alone.
#[tokio::test]
async fn reap_orphans_removes_only_this_owners_containers() {
    let Some((owner, engine, _cleanup)) = setup("reap", &[CONFORMANCE]).await else {
        return;
    };
    let other = format!("{owner}-other");
    let _cleanup_other = Cleanup::new(&[&other]);
    let docker = docker().await;

    // A running container whose handle is lost, as after a crash of berth.
    let attached = engine.run(&hardened(&owner, CONFORMANCE)).await.unwrap();
    let running = attached.container.id().to_owned();
    std::mem::forget(attached.container);
    // A created, never started one of this owner, and one of another berth.
    let create = |owner: &str, name: String| {
        let body = ContainerCreateBody {
            image: Some(CONFORMANCE.to_owned()),
            labels: Some(HashMap::from([
                ("managed-by".to_owned(), "berth".to_owned()),
                ("berth.owner".to_owned(), owner.to_owned()),
            ])),
            ..Default::default()
        };
        let docker = docker.clone();
        async move {
            let options = CreateContainerOptionsBuilder::new().name(&name).build();
            docker.create_container(Some(options), body).await.unwrap().id
        }
    };
    let created = create(&owner, format!("berth-{owner}-created")).await;
    let foreign = create(&other, format!("berth-{other}-foreign")).await;

    assert_eq!(engine.reap_orphans().await.unwrap(), 2);
    assert!(!exists(&docker, &running).await);
    assert!(!exists(&docker, &created).await);
    assert!(exists(&docker, &foreign).await, "another owner's container was reaped");
    assert_eq!(engine.reap_orphans().await.unwrap(), 0);
}
