//! SIGHUP: reload the users, groups and tokens without a restart.
//!
//! berth reads its configuration file again (or, without one, the environment's user) and
//! builds everything credentials are made of, exactly as at start-up: the users of all sources,
//! the tokens, the groups and the admin users, checked against the backends' `allow` lists.
//! Only when all of it is valid does it swap them in, all at once; otherwise it logs why and
//! keeps what it had. Requests in flight keep the identity they were given, and sessions stay
//! bound to it. Everything else in the file (backends, listeners, limits) needs a restart.

use std::{path::PathBuf, sync::Arc};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::{admin_users, authenticator, memberships};
use crate::{
    access::Memberships,
    auth::Authenticator,
    config::{Config, ConfigError},
};

/// What a reload replaces, and where the configuration comes from.
#[derive(Debug, Clone)]
pub(crate) struct Reloader {
    /// The configuration file; `None` for the built-in configuration.
    pub(crate) path: Option<PathBuf>,
    /// The native services of the built-in configuration.
    pub(crate) native_names: Vec<String>,
    /// The MCP port's authenticator (its clones share the users and tokens it replaces).
    pub(crate) mcp: Authenticator,
    /// The admin listener's, when there is one.
    pub(crate) admin: Option<Authenticator>,
    /// The groups the `allow` lists are checked against.
    pub(crate) memberships: Arc<ArcSwap<Memberships>>,
}

/// What a reload found, for its log line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reloaded {
    /// Users of every source.
    pub(crate) users: usize,
    /// API tokens.
    pub(crate) tokens: usize,
}

impl Reloader {
    /// Reads the configuration again and swaps in its credentials, or says why not (and
    /// changes nothing).
    pub(crate) fn reload(&self, env: super::EnvLookup<'_>) -> Result<Reloaded, ConfigError> {
        let config = match &self.path {
            Some(path) => Config::load(path)?,
            None => Config::builtin(self.native_names.iter().cloned())?,
        };
        let fresh = authenticator(&config, env)?;
        let (Some(users), Some(tokens)) = (fresh.users(), fresh.tokens()) else {
            return Err(config.source.invalid(None, "auth", "switching to auth = \"none\" needs a restart"));
        };
        if matches!(self.mcp, Authenticator::None) {
            return Err(config.source.invalid(None, "auth", "switching from auth = \"none\" needs a restart"));
        }
        let groups = memberships(&config, &fresh)?;
        let admins = match &self.admin {
            Some(_) => Some(admin_users(&config, &fresh)?),
            None => None,
        };
        let reloaded = Reloaded { users: users.len(), tokens: tokens.len() };
        self.mcp.replace(users, Some(tokens));
        if let (Some(admin), Some(admins)) = (&self.admin, admins) {
            admin.replace(admins, None);
        }
        self.memberships.store(Arc::new(groups));
        Ok(reloaded)
    }
}

/// Reloads at each SIGHUP, until `stop`.
pub(crate) fn reload_on_sighup(reloader: Reloader, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut signals) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: users and tokens will not be reloaded on it");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                signal = signals.recv() => {
                    if signal.is_none() {
                        return;
                    }
                    let env = |name: &str| std::env::var(name).ok();
                    match reloader.reload(&env) {
                        Ok(Reloaded { users, tokens }) => {
                            tracing::info!(users, tokens, "SIGHUP: reloaded users, groups and tokens");
                        }
                        Err(error) => {
                            tracing::error!("SIGHUP: kept the users, groups and tokens in use: {error}");
                        }
                    }
                }
            }
        }
    });
}
