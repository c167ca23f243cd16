//! `berth status`: the backends as a table, read from the admin listener's `/api/backends`.
//!
//! The admin user comes from `--user` (or `BERTH_ADMIN_USER`), the password from
//! `BERTH_ADMIN_PASSWORD` or, when that is unset, the first line of standard input, never from
//! the command line (where `ps` would show it).

use std::{fmt::Write as _, path::Path, process::ExitCode, time::Duration};

use base64::Engine as _;
use serde::Deserialize;

use super::healthcheck::{Target, get};

/// A backend as `/api/backends` answers it (the fields the table shows).
#[derive(Debug, Deserialize)]
struct Backend {
    name: String,
    kind: String,
    #[serde(default)]
    state: String,
    ready: bool,
    sessions: Option<usize>,
    #[serde(default)]
    instances: Vec<serde_json::Value>,
    restarts: u64,
    last_error: Option<LastError>,
}

#[derive(Debug, Deserialize)]
struct LastError {
    message: String,
}

#[derive(Debug, Deserialize)]
struct Backends {
    backends: Vec<Backend>,
}

/// The admin URL: `--admin`, else the configuration's `admin.listen`, else the default port.
fn admin_url(admin: Option<&str>, config: Option<&Path>) -> Result<String, String> {
    if let Some(url) = admin {
        return Ok(url.trim_end_matches('/').to_string());
    }
    let Some(path) = config else { return Ok("http://127.0.0.1:9180".into()) };
    let config = crate::config::Config::load(path).map_err(|error| error.to_string())?;
    let listen =
        config.validated.admin_listen.ok_or_else(|| format!("{}: [admin] listen is not set", path.display()))?;
    let target = Target::local(listen, config.admin.tls.is_some());
    let scheme = if target.tls { "https" } else { "http" };
    let host = if target.host.contains(':') { format!("[{}]", target.host) } else { target.host };
    Ok(format!("{scheme}://{host}:{}", target.port))
}

/// The table: one line per backend, columns aligned.
fn table(backends: &[Backend]) -> String {
    let mut rows = vec![
        ["BACKEND", "KIND", "STATE", "READY", "INSTANCES", "SESSIONS", "RESTARTS", "LAST ERROR"].map(String::from),
    ];
    for backend in backends {
        rows.push([
            backend.name.clone(),
            backend.kind.clone(),
            if backend.state.is_empty() { "running".into() } else { backend.state.clone() },
            if backend.ready { "yes" } else { "no" }.into(),
            backend.instances.len().to_string(),
            backend.sessions.map_or_else(|| "-".into(), |n| n.to_string()),
            backend.restarts.to_string(),
            backend.last_error.as_ref().map_or_else(|| "-".into(), |error| error.message.replace('\n', " ")),
        ]);
    }
    let widths: Vec<usize> =
        (0..8).map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[column]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Runs `berth status`.
pub(super) fn run(admin: Option<&str>, config: Option<&Path>, user: &str, timeout: Duration) -> ExitCode {
    match status(admin, config, user, timeout) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("berth status: {error}");
            ExitCode::FAILURE
        }
    }
}

fn password() -> Result<String, String> {
    if let Ok(password) = std::env::var("BERTH_ADMIN_PASSWORD") {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|error| format!("cannot read the password: {error}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn status(admin: Option<&str>, config: Option<&Path>, user: &str, timeout: Duration) -> Result<String, String> {
    let base = admin_url(admin, config)?;
    let target = Target::from_url(&format!("{base}/api/backends"))?;
    let credential = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password()?));
    let authorization = format!("Basic {credential}");
    let (status, body) = get(&target, timeout, &[("Authorization", &authorization), ("User-Agent", "berth-status")])?;
    if status != 200 {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|answer| answer["message"].as_str().map(str::to_owned))
            .unwrap_or(body);
        return Err(format!("{base}/api/backends answered {status}: {message}"));
    }
    let answer: Backends = serde_json::from_str(&body).map_err(|error| format!("unexpected answer: {error}"))?;
    Ok(table(&answer.backends))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_its_columns_and_shows_every_field() {
        let answer: Backends = serde_json::from_value(serde_json::json!({"backends": [
            {"name": "fs", "kind": "docker", "state": "running", "ready": true, "sessions": 2,
             "instances": [{}, {}], "restarts": 0, "last_error": null, "required": false},
            {"name": "search-long-name", "kind": "native", "state": "stopped", "ready": false,
             "sessions": null, "instances": [], "restarts": 3, "last_error": {"message": "exit 1\nboom", "at": "x"}},
        ]}))
        .unwrap();
        let text = table(&answer.backends);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("BACKEND           KIND    STATE    READY"), "{text}");
        assert!(lines[1].starts_with("fs                docker  running  yes    2          2"), "{text}");
        assert!(lines[2].ends_with("stopped  no     0          -         3         exit 1 boom"), "{text}");
    }

    #[test]
    fn the_admin_url_is_the_flag_or_the_default() {
        assert_eq!(admin_url(Some("http://10.0.0.1:9180/"), None).unwrap(), "http://10.0.0.1:9180");
        assert_eq!(admin_url(None, None).unwrap(), "http://127.0.0.1:9180");
    }
}
