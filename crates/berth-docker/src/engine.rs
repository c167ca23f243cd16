//! The connection to a Docker engine and its health.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bollard::Docker;
use tokio_util::sync::CancellationToken;

use crate::error::DockerError;

/// The label that marks every container berth creates.
pub(crate) const LABEL_MANAGED_BY: &str = "managed-by";
/// The value of [`LABEL_MANAGED_BY`].
pub(crate) const MANAGED_BY: &str = "berth";
/// The label naming the backend a container serves.
pub(crate) const LABEL_BACKEND: &str = "berth.backend";
/// The label naming the instance of the backend.
pub(crate) const LABEL_INSTANCE: &str = "berth.instance";

/// How often [`Engine::watch`] pings a healthy engine.
const PING_INTERVAL: Duration = Duration::from_secs(2);
/// How long a ping may take before the engine counts as down.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// First and last delays between reconnection attempts to an engine that is down.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The read/write timeout bollard applies to every request until the answer's headers arrive.
/// Streams (attach, wait) are not limited by it once they are established.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// A connection to a Docker engine; cheap to clone; keeps its own health state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced by a fresh client on reconnection, so that no pooled connection to a dead engine
    /// is reused and the API version is negotiated again. `None` until the engine's unix socket
    /// has existed once.
    docker: RwLock<Option<Docker>>,
    /// Where the engine is, as in `DOCKER_HOST`.
    host: String,
    up: AtomicBool,
}

impl Engine {
    /// Connects through `DOCKER_HOST` (unix socket by default; tcp with TLS when
    /// `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH` are set), negotiating the API version (bollard
    /// defaults to a newer one than many engines speak).
    ///
    /// Fails when the engine does not answer; see [`Engine::new`] for a connection that starts
    /// down and comes up later through [`Engine::watch`].
    pub async fn connect() -> Result<Engine, DockerError> {
        let engine = Engine::new()?;
        engine.reconnect().await?;
        engine.inner.up.store(true, Ordering::Relaxed);
        Ok(engine)
    }

    /// Like [`Engine::connect`], but does not talk to the engine: it only fails when `DOCKER_HOST`
    /// or the TLS files are unusable. The engine starts out down; [`Engine::watch`] brings it up.
    pub fn new() -> Result<Engine, DockerError> {
        Engine::with_host(&docker_host())
    }

    /// Like [`Engine::new`], for the engine at `host` (`unix:///path`, `tcp://host:port`, ...)
    /// instead of `DOCKER_HOST`'s.
    pub fn with_host(host: &str) -> Result<Engine, DockerError> {
        let docker = match client(host) {
            Ok(docker) => Some(docker),
            // bollard checks that a unix socket exists; an engine that is not started yet is
            // down, not misconfigured.
            Err(bollard::errors::Error::SocketNotFoundError(_)) => None,
            Err(error) => return Err(DockerError::Connect(error)),
        };
        Ok(Engine {
            inner: Arc::new(Inner { docker: RwLock::new(docker), host: host.to_owned(), up: AtomicBool::new(false) }),
        })
    }

    /// Where the engine is, as in `DOCKER_HOST` (`unix:///var/run/docker.sock` by default).
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// Whether the engine answered its last ping.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// The current client; a clone shares its connection pool.
    pub(crate) fn docker(&self) -> Result<Docker, DockerError> {
        let current = self.inner.docker.read().unwrap_or_else(|e| e.into_inner()).clone();
        match current {
            Some(docker) => Ok(docker),
            None => client(&self.inner.host).map_err(DockerError::Connect),
        }
    }

    fn set_up(&self, up: bool) {
        let was = self.inner.up.swap(up, Ordering::Relaxed);
        match (was, up) {
            (true, false) => tracing::warn!("the Docker engine stopped answering"),
            (false, true) => tracing::info!("the Docker engine answers"),
            _ => {}
        }
    }

    /// Spawns a background task that pings the engine every 2 s, flips [`Engine::is_up`], and
    /// reconnects with exponential backoff (250 ms to 10 s) after the engine restarts or
    /// vanishes. The task ends when `shutdown` is cancelled.
    ///
    /// Must be called from within a Tokio runtime.
    pub fn watch(&self, shutdown: CancellationToken) {
        let engine = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = engine.watch_loop() => {}
            }
        });
    }

    async fn watch_loop(&self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.is_up() {
                let answer = match self.docker() {
                    Ok(docker) => ping(&docker).await.map_err(DockerError::Connect),
                    Err(error) => Err(error),
                };
                match answer {
                    Ok(()) => {
                        backoff = BACKOFF_MIN;
                        tokio::time::sleep(PING_INTERVAL).await;
                        continue;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "Docker ping failed");
                        self.set_up(false);
                    }
                }
            }
            // Down: build a fresh client (the engine may have restarted with another API
            // version, and pooled connections to the old one are dead) and try it.
            match self.reconnect().await {
                Ok(()) => self.set_up(true),
                Err(error) => {
                    tracing::debug!(%error, retry_in = ?backoff, "Docker engine still unreachable");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    async fn reconnect(&self) -> Result<(), DockerError> {
        let docker = client(&self.inner.host).map_err(DockerError::Connect)?;
        let docker = negotiate(docker).await?;
        *self.inner.docker.write().unwrap_or_else(|e| e.into_inner()) = Some(docker);
        Ok(())
    }
}

/// `DOCKER_HOST`, or the default unix socket.
fn docker_host() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => host,
        _ => DEFAULT_HOST.to_owned(),
    }
}

/// Where the docker CLI looks when `DOCKER_HOST` is not set.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Builds a client for `host`, as the docker CLI does (TLS for `tcp://` when
/// `DOCKER_TLS_VERIFY` is set, with the files in `DOCKER_CERT_PATH`).
fn client(host: &str) -> Result<Docker, bollard::errors::Error> {
    let tls = host.starts_with("https://")
        || (host.starts_with("tcp://") && std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty()));
    if tls {
        // rustls panics when more than one crypto provider is compiled in and none is installed
        // (the workspace links ring; another dependency may add aws-lc-rs). Installing fails
        // harmlessly when one is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    Ok(Docker::connect_with_host(host)?.with_timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS)))
}

/// Pings the engine and lowers the client's API version to the engine's when it is older.
async fn negotiate(docker: Docker) -> Result<Docker, DockerError> {
    ping(&docker).await.map_err(DockerError::Connect)?;
    docker.negotiate_version().await.map_err(DockerError::Connect)
}

async fn ping(docker: &Docker) -> Result<(), bollard::errors::Error> {
    match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
        Ok(answer) => answer.map(drop),
        Err(_) => Err(bollard::errors::Error::RequestTimeoutError),
    }
}
