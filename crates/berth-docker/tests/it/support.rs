//! What every Docker test needs: an engine (or a notice), the test images, a hardened spec, a
//! cleanup guard, a line reader and a bounded wait.

use std::collections::HashMap;
use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_docker::{ContainerSpec, ContainerTemplate, Engine, Owner, Run};
use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The image with berth's own conformance server, `FROM scratch`.
pub(crate) const CONFORMANCE: &str = "berth-test/conformance:dev";
/// The image with the npm package `@modelcontextprotocol/server-everything`.
pub(crate) const EVERYTHING: &str = "berth-test/everything:dev";
/// The image with Node, npm and npx and a POSIX `/bin/sh` (dash), nothing else.
pub(crate) const NODE_BASE: &str = "berth-test/node-base:dev";

/// How long any single read may take before the test gives up instead of hanging. It bounds a
/// hang; it is not an assertion about speed.
const READ_LIMIT: Duration = Duration::from_secs(60);

/// A test's deployment name, unique per test process and name, so that tests running in
/// parallel never see (or sweep) each other's containers.
pub(crate) fn owner(test: &str) -> String {
    format!("test-{test}-{}", std::process::id())
}

/// Connects to the engine, or returns `None` (with a notice) when none answers and
/// `BERTH_REQUIRE_DOCKER` is not `1`.
pub(crate) async fn engine() -> Option<Engine> {
    match Engine::connect().await {
        Ok(engine) => Some(engine),
        Err(error) if std::env::var("BERTH_REQUIRE_DOCKER").as_deref() == Ok("1") => {
            panic!("BERTH_REQUIRE_DOCKER=1 but no Docker engine answers: {error}")
        }
        Err(error) => {
            eprintln!("notice: skipping a Docker test, no Docker engine answers ({error})");
            None
        }
    }
}

/// What a test starts with: its deployment name (from `test`), an engine, and the guard that
/// removes the deployment's containers, with `images` built; `None` (with a notice) when no
/// engine answers, as [`engine`].
pub(crate) async fn setup(test: &str, images: &[&str]) -> Option<(String, Engine, Cleanup)> {
    let owner = owner(test);
    let engine = engine().await?;
    let cleanup = Cleanup::new(&[&owner]);
    if !images.is_empty() {
        build_images(images);
    }
    Some((owner, engine, cleanup))
}

/// Polls `condition` every 100 ms until it holds; panics, naming `what`, after `within` (a
/// bound that only prevents a hang).
pub(crate) async fn wait_until<F: Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut condition: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A bollard client for checks behind berth-docker's back.
pub(crate) async fn docker() -> Docker {
    Docker::connect_with_defaults().unwrap().negotiate_version().await.unwrap()
}

/// Builds (or finds up to date) the named test images; see `scripts/build-test-images.sh`.
pub(crate) fn build_images(images: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/build-test-images.sh");
    let names: Vec<&str> = images
        .iter()
        .map(|image| match *image {
            CONFORMANCE => "conformance",
            EVERYTHING => "everything",
            NODE_BASE => "node-base",
            other => panic!("no recipe for test image {other}"),
        })
        .collect();
    let status = Command::new("bash").arg(script).args(&names).status().unwrap();
    assert!(status.success(), "{script} {names:?} failed: {status}");
}

/// The run of this test process, as berth's would be.
pub(crate) fn test_run() -> Run {
    static RUN: std::sync::OnceLock<Run> = std::sync::OnceLock::new();
    RUN.get_or_init(|| Run::current(None)).clone()
}

/// The default hardening of issue 3, with numeric ids because `FROM scratch` images may have no
/// user database, for a container of the deployment `owner` made by [`test_run`].
pub(crate) fn hardened(owner: &str, image: &str) -> ContainerSpec {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    ContainerSpec {
        owner: Owner::new(owner, test_run()),
        backend: owner.to_owned(),
        instance: NEXT.fetch_add(1, Ordering::Relaxed).to_string(),
        env: vec!["BERTH_TEST_SECRET=not-to-be-logged".to_owned()],
        template: ContainerTemplate {
            image: image.to_owned(),
            pull_if_missing: false,
            command: None,
            entrypoint: None,
            workdir: None,
            network_mode: "none".to_owned(),
            cap_drop: vec!["ALL".to_owned()],
            cap_add: vec![],
            read_only: true,
            tmpfs: vec!["/tmp".to_owned()],
            memory_bytes: 512 << 20,
            nano_cpus: 1_000_000_000,
            pids_limit: 128,
            user: Some("65534:65534".to_owned()),
            init: true,
            no_new_privileges: true,
            binds: vec![],
        },
    }
}

/// The containers of the deployment `owner`, running or not.
pub(crate) async fn containers_of(docker: &Docker, owner: &str) -> Vec<String> {
    let filters = HashMap::from([("label", vec![format!("berth.deployment={owner}")])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    docker.list_containers(Some(options)).await.unwrap().into_iter().filter_map(|c| c.id).collect()
}

/// Whether the engine still knows the container.
pub(crate) async fn exists(docker: &Docker, id: &str) -> bool {
    match docker.inspect_container(id, None).await {
        Ok(_) => true,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => false,
        Err(error) => panic!("inspecting {id}: {error}"),
    }
}

/// Removes every container of the given deployments when dropped, even when the test failed.
pub(crate) struct Cleanup {
    owners: Vec<String>,
}

impl Cleanup {
    /// Cleans up after `owners`.
    pub(crate) fn new(owners: &[&str]) -> Cleanup {
        Cleanup { owners: owners.iter().map(|o| (*o).to_owned()).collect() }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let owners = std::mem::take(&mut self.owners);
        // A thread of its own, with its own runtime: the test's runtime may be unwinding.
        let cleaning = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let docker = docker().await;
                for owner in &owners {
                    for id in containers_of(&docker, owner).await {
                        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
                        if let Err(error) = docker.remove_container(&id, Some(options)).await {
                            eprintln!("cleanup: cannot remove {id}: {error}");
                        }
                    }
                }
            });
        });
        let _ = cleaning.join();
    }
}

/// Reassembles newline-delimited messages from a stream of chunks that are not line-aligned.
pub(crate) struct Lines {
    chunks: BoxStream<'static, std::io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl Lines {
    pub(crate) fn new(chunks: BoxStream<'static, std::io::Result<Bytes>>) -> Lines {
        Lines { chunks, buffer: Vec::new() }
    }

    /// The next line without its newline, or `None` at the end of the stream.
    pub(crate) async fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(String::from_utf8(line[..end].to_vec()).unwrap());
            }
            let chunk = tokio::time::timeout(READ_LIMIT, self.chunks.next())
                .await
                .unwrap_or_else(|_| panic!("no output within {READ_LIMIT:?}"));
            match chunk {
                Some(chunk) => self.buffer.extend_from_slice(&chunk.unwrap()),
                None if self.buffer.is_empty() => return None,
                None => return Some(String::from_utf8(std::mem::take(&mut self.buffer)).unwrap()),
            }
        }
    }

    /// Everything until the end of the stream.
    pub(crate) async fn rest(&mut self) -> String {
        let mut all = String::new();
        while let Some(line) = self.next_line().await {
            all.push_str(&line);
            all.push('\n');
        }
        all
    }

    /// The response to the request with this id, skipping notifications and other messages.
    pub(crate) async fn response(&mut self, id: i64) -> Value {
        loop {
            let line = self.next_line().await.unwrap_or_else(|| panic!("output ended before response {id}"));
            let message: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", &line[..line.len().min(200)]));
            if message["id"] == id && message.get("method").is_none() {
                return message;
            }
        }
    }
}

/// The newline-terminated JSON-RPC messages that open a session.
pub(crate) fn handshake() -> Vec<Value> {
    vec![
        serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": { "name": "berth-docker-test", "version": "0" }
            }
        }),
        serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
    ]
}

/// Writes [`handshake`] to a server's stdin.
pub(crate) async fn send_handshake(stdin: &mut (impl AsyncWrite + Unpin)) {
    for message in handshake() {
        stdin.write_all(&line(&message)).await.unwrap();
    }
}

/// One message as a line.
pub(crate) fn line(message: &Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).unwrap();
    line.push(b'\n');
    line
}

impl Lines {
    /// [`Lines::rest`], consuming the reader (for `tokio::join!`).
    pub(crate) async fn rest_owned(mut self) -> String {
        self.rest().await
    }
}
