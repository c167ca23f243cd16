//! The engine's health: up while it answers, down while it is gone, up again when it is back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_docker::{Engine, Owner, Sweep};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::support::{engine, owner, test_run, wait_until};

/// A unix socket in front of the engine's that the test can take away and bring back, as if the
/// engine vanished and restarted, without disturbing the real engine that other tests use.
struct Proxy {
    path: PathBuf,
    upstream: PathBuf,
    tasks: JoinSet<()>,
}

impl Proxy {
    fn new(path: PathBuf, upstream: PathBuf) -> Proxy {
        Proxy { path, upstream, tasks: JoinSet::new() }
    }

    /// Starts accepting and forwarding connections.
    fn open(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).unwrap();
        let upstream = self.upstream.clone();
        self.tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut engine) = UnixStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        });
    }

    /// Closes the socket and every connection through it (dropping the inner JoinSet aborts
    /// the connections).
    fn close(&mut self) {
        self.tasks.abort_all();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Polls `is_up` until it equals `expected`; gives up (fails) after a bound that only prevents a
/// hang.
async fn until_up_is(engine: &Engine, expected: bool) {
    let what = format!("is_up() becomes {expected}");
    wait_until(&what, Duration::from_secs(60), || std::future::ready(engine.is_up() == expected)).await;
}

/// watch() notices an engine that vanishes, and reconnects when it is back.
#[tokio::test]
async fn watch_follows_the_engine_going_and_coming_back() {
    let owner = owner("watch");
    let Some(real) = engine().await else {
        return;
    };
    drop(real);
    let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let Some(upstream) = host.strip_prefix("unix://") else {
        eprintln!("notice: DOCKER_HOST is not a unix socket; the proxy of this test needs one");
        return;
    };
    let dir = std::env::temp_dir().join(format!("berth-docker-{owner}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut proxy = Proxy::new(dir.join("docker.sock"), Path::new(upstream).to_owned());

    // Not there yet: the engine starts down and comes up once the socket exists.
    let engine = Engine::with_host(&format!("unix://{}", proxy.path.display())).unwrap();
    let owner = Owner::new(&owner, test_run());
    assert!(!engine.is_up());
    let shutdown = CancellationToken::new();
    engine.watch(shutdown.clone());
    proxy.open();
    until_up_is(&engine, true).await;
    assert_eq!(engine.sweep(&owner, Sweep::Final).await.unwrap(), 0, "the engine answers through the proxy");

    proxy.close();
    until_up_is(&engine, false).await;
    assert!(engine.sweep(&owner, Sweep::Final).await.unwrap_err().is_engine_unreachable());

    proxy.open();
    until_up_is(&engine, true).await;
    assert_eq!(engine.sweep(&owner, Sweep::Final).await.unwrap(), 0);

    shutdown.cancel();
    proxy.close();
    let _ = std::fs::remove_dir_all(&dir);
}
