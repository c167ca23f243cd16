//! `[admin] state_file`: the backends an admin made with `PUT /api/backends/{name}`.
//!
//! The file holds nothing but `[backends.<name>]` tables, in the configuration's own syntax,
//! and is written only by berth. It is read with the configuration file, as if its tables were
//! appended to it, so that the backends it holds are validated by the same code with the same
//! messages; an error in it names the state file and its own line. A name cannot be in both
//! files (the configuration file wins: the API refuses to write it).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use super::{Config, ConfigError};

/// The first lines of every state file berth writes.
pub(crate) const HEADER: &str = "# Written by berth's admin API (PUT and DELETE /api/backends/{name}): backends made at\n\
# run time, loaded after the configuration file. Edit the configuration file instead.\n\n";

/// Where `config`'s state file is: `admin.state_file`, relative to the configuration file.
pub(crate) fn path_of(config: &Config) -> Option<PathBuf> {
    let file = PathBuf::from(config.admin.state_file.as_ref()?.get_ref());
    let base = config.source.path.as_deref().and_then(Path::parent);
    Some(match base {
        Some(base) if file.is_relative() => base.join(file),
        _ => file,
    })
}

/// The state file's backends as a TOML table (empty when the file does not exist yet).
pub(crate) fn read(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(toml::Table::new()),
        Err(source) => return Err(ConfigError::Io { path: path.to_owned(), source }),
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(|error| {
        let (line, column) = error.span().map(|span| super::line_column(&text, span.start)).unwrap_or((1, 1));
        ConfigError::Parse { path: path.to_owned(), line, column, message: error.message().trim().to_string() }
    })?;
    if let Some(key) = table.keys().find(|key| *key != "backends") {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            line: None,
            field: key.clone(),
            message: "a state file holds only [backends.<name>] tables".into(),
        });
    }
    match table.remove("backends") {
        None => Ok(toml::Table::new()),
        Some(toml::Value::Table(backends)) => Ok(backends),
        Some(_) => Err(ConfigError::Invalid {
            path: path.to_owned(),
            line: None,
            field: "backends".into(),
            message: "must be a table of [backends.<name>] tables".into(),
        }),
    }
}

/// The text of a state file holding `backends`.
pub(crate) fn render(backends: &toml::Table) -> String {
    let mut whole = toml::Table::new();
    whole.insert("backends".into(), toml::Value::Table(backends.clone()));
    format!("{HEADER}{}", toml::to_string(&whole).unwrap_or_default())
}

/// Parses the configuration `text` (from `path`) with the state file's `backends` appended;
/// an error in the appended part names `state_path` and the line there.
pub(crate) fn merged(
    text: &str,
    path: Option<&Path>,
    backends: &toml::Table,
    state_path: &Path,
) -> Result<Config, ConfigError> {
    if backends.is_empty() {
        return Config::parse(text, path);
    }
    let state = render(backends);
    let separator = if text.ends_with('\n') { "\n" } else { "\n\n" };
    let merged = format!("{text}{separator}{state}");
    // Lines before the state file's first one.
    let offset = format!("{text}{separator}").lines().count();
    let remap = |line: usize| (line > offset).then(|| line - offset);
    let mut config = Config::parse(&merged, path).map_err(|error| match error {
        ConfigError::Parse { line, column, message, path: file } => match remap(line) {
            Some(line) => ConfigError::Parse { path: state_path.to_owned(), line, column, message },
            None => ConfigError::Parse { path: file, line, column, message },
        },
        ConfigError::Invalid { line: Some(line), field, message, path: file } => match remap(line) {
            Some(line) => ConfigError::Invalid { path: state_path.to_owned(), line: Some(line), field, message },
            None => ConfigError::Invalid { path: file, line: Some(line), field, message },
        },
        other => other,
    })?;
    config.dynamic = backends.keys().cloned().collect::<BTreeSet<_>>();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse::<toml::Table>().unwrap()["backends"].as_table().unwrap().clone()
    }

    #[test]
    fn state_backends_are_validated_by_the_same_code_and_errors_name_the_state_file() {
        let text = "auth = \"none\"\n\n[backends.fixed]\nkind = \"native\"\nservice = \"conformance\"\n";
        let state = Path::new("/srv/state.toml");
        let good = table("[backends.made]\nkind = \"native\"\nservice = \"conformance\"\n");
        let config = merged(text, Some(Path::new("/srv/berth.toml")), &good, state).unwrap();
        assert_eq!(config.backends.keys().collect::<Vec<_>>(), ["fixed", "made"]);
        assert_eq!(config.dynamic.iter().collect::<Vec<_>>(), ["made"]);
        let bad = table("[backends.made]\nkind = \"process\"\n");
        let error = merged(text, Some(Path::new("/srv/berth.toml")), &bad, state).unwrap_err();
        match error {
            ConfigError::Invalid { path, line, field, .. } => {
                assert_eq!(path, state);
                assert_eq!(field, "backends.made.command");
                let rendered = render(&bad);
                let expected = rendered.lines().position(|l| l == "[backends.made]").unwrap() + 1;
                assert_eq!(line, Some(expected));
            }
            other => panic!("{other:?}"),
        }
        // A name of the configuration file cannot be in the state file too.
        let twice = table("[backends.fixed]\nkind = \"native\"\nservice = \"conformance\"\n");
        assert!(merged(text, None, &twice, state).is_err());
    }

    #[test]
    fn a_state_file_holds_only_backends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.toml");
        assert!(read(&path).unwrap().is_empty(), "a missing file is an empty state");
        std::fs::write(&path, "[server]\nlisten = \"0.0.0.0:1\"\n").unwrap();
        assert!(matches!(read(&path), Err(ConfigError::Invalid { field, .. }) if field == "server"));
        let backends = table("[backends.a]\nkind = \"native\"\n");
        std::fs::write(&path, render(&backends)).unwrap();
        assert_eq!(read(&path).unwrap(), backends);
        assert!(render(&backends).starts_with("# Written by berth"));
    }
}
