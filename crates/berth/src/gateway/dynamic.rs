//! Backends made at run time: `PUT` and `DELETE /api/backends/{name}`.
//!
//! A `PUT` body is a `[backends.<name>]` table as JSON. berth writes it into `admin.state_file`
//! only after the configuration file and the new state file together pass the start-up
//! validation (the same code, the same messages), then reloads: the backend starts, or, when it
//! replaces one made before, the old one drains and stops. A name of the configuration file
//! cannot be written or deleted here. If the reload fails, the previous state file is put back.
//! One change at a time.

use std::path::{Path, PathBuf};

use super::{ReloadError, Reloaded, Reloader};
use crate::config::{ConfigError, state};

/// What a change of the state file did.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Changed {
    /// The backend.
    pub(crate) backend: String,
    /// Whether the backend is new (a `PUT` of a name that was not there).
    pub(crate) created: bool,
    /// What the reload that applied it did.
    pub(crate) reloaded: Reloaded,
}

/// Why a change was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChangeError {
    /// No `admin.state_file`, or no configuration file.
    #[error("backends can be made through the API only with [admin] state_file set in the configuration file")]
    NoStateFile,
    /// The name belongs to the configuration file.
    #[error("backend `{0}` is defined in the configuration file: edit the file (and reload) instead")]
    Static(String),
    /// `DELETE` of a name the state file does not have.
    #[error("no backend `{0}` made through the API")]
    NotFound(String),
    /// The body is not a table.
    #[error("{0}")]
    Body(String),
    /// The backend (or the files with it) is not valid.
    #[error("{0}")]
    Invalid(ConfigError),
    /// The state file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The reload that would apply it failed (the configuration file changed meanwhile, say).
    #[error("{0}")]
    Reload(ReloadError),
}

/// Writes `text` to `path` whole or not at all (a temporary file, flushed to the disk, renamed
/// over it), readable by berth's user alone (mode 0600: a backend's `env` may hold secrets).
fn write_atomically(path: &Path, text: &str) -> Result<(), ChangeError> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let failed = |source| ChangeError::Write { path: path.to_owned(), source };
    let temporary = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary).map_err(failed)?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(failed)
}

impl Reloader {
    /// Makes or replaces backend `name` from `table` (a `[backends.<name>]` table as JSON).
    pub(crate) async fn put_backend(
        &self,
        name: &str,
        table: serde_json::Value,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Changed, ChangeError> {
        if !table.is_object() {
            return Err(ChangeError::Body(
                "the body must be a JSON object: the fields of a [backends.<name>] table".into(),
            ));
        }
        let value = toml::Value::try_from(&table)
            .map_err(|error| ChangeError::Body(format!("the body cannot be a TOML table: {error}")))?;
        self.change(name, env, move |backends| Ok(backends.insert(name.to_string(), value).is_none())).await
    }

    /// Deletes backend `name`, made before with [`Reloader::put_backend`].
    pub(crate) async fn delete_backend(
        &self,
        name: &str,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Changed, ChangeError> {
        self.change(name, env, |backends| match backends.remove(name) {
            Some(_) => Ok(false),
            None => Err(ChangeError::NotFound(name.to_string())),
        })
        .await
    }

    async fn change(
        &self,
        name: &str,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
        edit: impl FnOnce(&mut toml::Table) -> Result<bool, ChangeError>,
    ) -> Result<Changed, ChangeError> {
        let _one = self.state_lock.lock().await;
        let path = self.path.clone().ok_or(ChangeError::NoStateFile)?;
        let config = self.config();
        let state_path = state::path_of(&config).ok_or(ChangeError::NoStateFile)?;
        if config.backends.contains_key(name) && !config.dynamic.contains(name) {
            return Err(ChangeError::Static(name.to_string()));
        }
        let previous = std::fs::read_to_string(&state_path).ok();
        let mut backends = state::read(&state_path).map_err(ChangeError::Invalid)?;
        let created = edit(&mut backends)?;
        // The same validation as at start-up, before anything is written.
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ChangeError::Invalid(ConfigError::Io { path: path.clone(), source }))?;
        state::merged(&text, Some(&path), &backends, &state_path).map_err(ChangeError::Invalid)?;
        write_atomically(&state_path, &state::render(&backends))?;
        match self.reload(env).await {
            Ok(reloaded) => Ok(Changed { backend: name.to_string(), created, reloaded }),
            Err(error) => {
                // Put the previous state back, so that the files say what runs.
                let restored = match &previous {
                    Some(previous) => write_atomically(&state_path, previous),
                    None => std::fs::remove_file(&state_path)
                        .map_err(|source| ChangeError::Write { path: state_path.clone(), source }),
                };
                if let Err(restore) = restored {
                    tracing::error!("{restore}");
                }
                Err(ChangeError::Reload(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_state_file_is_replaced_whole_and_readable_by_berth_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.toml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        // A temporary file a crash left behind does not stop the next write.
        std::fs::write(path.with_extension("tmp"), "stale").unwrap();
        write_atomically(&path, "[backends.x]\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[backends.x]\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!path.with_extension("tmp").exists());
    }
}
