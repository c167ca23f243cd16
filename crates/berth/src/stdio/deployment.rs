//! The name of this berth's deployment (label `berth.deployment` of its containers): the same
//! for every run of one deployment, so that a restarted berth sweeps what its predecessor left,
//! and different between deployments, so that two berths never sweep each other's containers.
//!
//! What is stable across restarts depends on where berth runs. A process on a host keeps its
//! configuration file and listen address, while its pid changes. A Compose service keeps its
//! project and service names, while `docker compose up` recreates the container under a new id,
//! which is also its host name. So the host name is never part of the name.

use std::path::{Path, PathBuf};

/// What the name is made from, known when the gateway is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Naming {
    /// `BERTH_INSTANCE_NAME`, when set and not empty: the operator's own name wins.
    pub(crate) instance_name: Option<String>,
    /// The configuration file, absolute; `None` for the built-in configuration.
    pub(crate) config: Option<PathBuf>,
    /// The configured listen address (`server.listen`, or `--listen`), not the bound one: port 0
    /// binds another port each time.
    pub(crate) listen: String,
}

impl Naming {
    /// The inputs of a gateway whose configuration came from `config` (relative paths are made
    /// absolute against the current directory) and listens on `listen`.
    pub(crate) fn new(instance_name: Option<String>, config: Option<&Path>, listen: String) -> Self {
        let config = config
            .map(|path| path.canonicalize().or_else(|_| std::path::absolute(path)).unwrap_or_else(|_| path.to_owned()));
        Self { instance_name: instance_name.filter(|name| !name.trim().is_empty()), config, listen }
    }

    /// The deployment's name, given the Compose project and service of the container berth runs
    /// in, if the engine runs it and Compose made it.
    pub(crate) fn deployment(&self, compose: Option<(&str, &str)>) -> String {
        if let Some(name) = &self.instance_name {
            return name.clone();
        }
        match compose {
            Some((project, service)) => format!("compose/{project}/{service}"),
            None => {
                let config = self.config.as_ref().map_or_else(|| "(built-in)".to_owned(), |p| p.display().to_string());
                format!("{config}@{}", self.listen)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_are_named_by_what_survives_a_restart() {
        let on = |name: Option<&str>, config: Option<&str>, listen: &str| {
            Naming::new(name.map(str::to_owned), config.map(Path::new), listen.to_owned())
        };
        let compose = Some(("shop", "berth"));
        let table = [
            (on(Some("prod"), Some("/etc/berth.toml"), "0.0.0.0:8080"), None, "prod"),
            (on(Some("prod"), None, "0.0.0.0:8080"), compose, "prod"),
            (on(Some("  "), Some("/etc/berth.toml"), "0.0.0.0:8080"), None, "/etc/berth.toml@0.0.0.0:8080"),
            (on(None, Some("/etc/berth.toml"), "0.0.0.0:8080"), compose, "compose/shop/berth"),
            (on(None, Some("/etc/berth.toml"), "127.0.0.1:9000"), None, "/etc/berth.toml@127.0.0.1:9000"),
            (on(None, None, "0.0.0.0:8080"), None, "(built-in)@0.0.0.0:8080"),
        ];
        for (naming, compose, expected) in table {
            assert_eq!(naming.deployment(compose), expected, "{naming:?} {compose:?}");
        }
    }

    #[test]
    fn relative_config_paths_are_made_absolute() {
        let naming = Naming::new(None, Some(Path::new("berth.toml")), "0.0.0.0:8080".to_owned());
        let expected = std::env::current_dir().unwrap().join("berth.toml");
        assert_eq!(naming.config.as_deref(), Some(expected.as_path()));
    }
}
