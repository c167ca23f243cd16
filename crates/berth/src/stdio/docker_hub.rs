//! The Docker engine shared by every docker backend of a gateway, and who this berth is to it:
//! its [`Owner`] (deployment and run), settled once the engine first answers, and the sweeps of
//! containers nobody uses any more (at start-up, when the engine comes back, at shutdown).

use std::sync::Arc;

use berth_docker::{Engine, Owner, Run, Sweep};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::deployment::Naming;

/// The engine and this berth's identity on it.
pub(crate) struct DockerHub {
    engine: Engine,
    naming: Naming,
    /// Settled the first time the engine answers (it may run berth's own container, whose
    /// Compose names make the deployment's name), right before the start-up sweep; every
    /// container is created after it.
    owner: OnceCell<Owner>,
}

impl std::fmt::Debug for DockerHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerHub").field("owner", &self.owner.get()).field("up", &self.engine.is_up()).finish()
    }
}

impl DockerHub {
    /// A hub over `engine`, for the deployment `naming` names.
    pub(crate) fn new(engine: Engine, naming: Naming) -> Arc<Self> {
        Arc::new(Self { engine, naming, owner: OnceCell::new() })
    }

    /// The engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Who this berth is: settled, and the containers of dead predecessors swept, the first time
    /// the engine answers. Fails (and is tried again next time) while the engine does not.
    pub(crate) async fn owner(&self) -> Result<&Owner, berth_docker::DockerError> {
        self.owner
            .get_or_try_init(|| async {
                let own = self.engine.own_container().await?;
                let compose = own.as_ref().and_then(|c| c.compose.as_ref()).map(|(p, s)| (p.as_str(), s.as_str()));
                let owner = Owner::new(self.naming.deployment(compose), Run::current(own.map(|c| c.id)));
                tracing::info!(deployment = owner.deployment(), run = owner.run().id, "containers of this berth");
                self.sweep(&owner, Sweep::Running, "removed containers of a previous run of this deployment").await;
                Ok(owner)
            })
            .await
    }

    /// Watches the engine's health until `shutdown`; settles the owner (and sweeps) if the
    /// engine answers now, and sweeps again whenever it answers after being away.
    pub(crate) async fn start(self: &Arc<Self>, shutdown: CancellationToken) {
        self.engine.watch(shutdown.clone());
        if self.engine.is_up() {
            let _ = self.owner().await;
        }
        // Containers the engine stopped while it was away could not be removed then: remove
        // them when it answers again (they are dead, and every instance has moved on).
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            let mut was_up = hub.engine.is_up();
            let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let up = hub.engine.is_up();
                if up && !was_up {
                    match hub.owner.get() {
                        Some(owner) => {
                            hub.sweep(owner, Sweep::Running, "removed containers the engine stopped while it was away")
                                .await;
                        }
                        None => drop(hub.owner().await),
                    }
                }
                was_up = up;
            }
        });
    }

    /// After every backend stopped: removes whatever container of this run is still there. Each
    /// instance removes its own container when it stops; this catches those the engine could not
    /// remove then (it was away, and the watcher did not see it come back before shutdown).
    pub(crate) async fn finish(&self) {
        if let Some(owner) = self.owner.get() {
            self.sweep(owner, Sweep::Final, "removed containers still there after every backend stopped").await;
        }
    }

    async fn sweep(&self, owner: &Owner, sweep: Sweep, done: &str) {
        match self.engine.sweep(owner, sweep).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "{done}"),
            Err(error) => tracing::warn!(%error, "could not sweep the containers of this deployment"),
        }
    }
}
