//! `[admin]` and `[audit]`: the operator's listener and the audit log.

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{EnvString, Source, TlsConfig, backend::parse_bytes, parse_listen};
use crate::config::ConfigError;

/// `[admin]`: a second listener for `/metrics` and `/api/...`, off unless `listen` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `HOST:PORT` of the admin listener; never the MCP port.
    pub listen: Option<Spanned<String>>,
    /// Users of any source (environment, `[[auth.users]]`, users file) who may use it, besides
    /// those marked `admin = true`.
    pub users: Vec<Spanned<String>>,
    /// Whether `/metrics` needs an admin's credentials (`false`: open, for a scraper on a
    /// private network; `/api` still needs them).
    pub metrics_auth: bool,
    /// Terminate TLS on the admin listener, as `[server.tls]` does on the MCP one.
    pub tls: Option<TlsConfig>,
    /// Where `PUT /api/backends/{name}` keeps the backends it makes (relative to the
    /// configuration file); without it, the API cannot make backends.
    pub state_file: Option<Spanned<String>>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: None, users: Vec::new(), metrics_auth: true, tls: None, state_file: None }
    }
}

/// `[audit]`: one JSON line per MCP request, refused login and admin action.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `"stderr"` or a file path; no audit log when unset.
    pub file: Option<Spanned<EnvString>>,
    /// Rotate the file when it would grow beyond this size (`"100m"`); unset: never (reopen
    /// it on SIGUSR1 after an external rotation instead).
    pub max_size: Option<Spanned<String>>,
    /// Rotated files kept (`audit.log.1` … `audit.log.<keep>`); default 5.
    pub keep: Option<usize>,
    /// Whether `tools/call` arguments are written (never by default: they may hold secrets).
    pub arguments: bool,
}

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuditTarget {
    /// berth's standard error.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

/// The validated `[audit]` table.
#[derive(Debug, Clone)]
pub(crate) struct AuditSpec {
    /// Where lines go.
    pub(crate) target: AuditTarget,
    /// Size at which berth rotates the file itself.
    pub(crate) max_size: Option<u64>,
    /// Rotated files kept.
    pub(crate) keep: usize,
    /// Whether tool arguments are written.
    pub(crate) arguments: bool,
}

impl AdminConfig {
    /// The admin address, checked: parsable, and not the MCP listener's.
    pub(crate) fn validate(
        &self,
        source: &Source,
        server_listen: SocketAddr,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(listen) = &self.listen else {
            if !self.users.is_empty() || self.tls.is_some() {
                return Err(source.invalid(None, "admin.listen", "[admin] has settings but no `listen` address"));
            }
            return Ok(None);
        };
        let address = parse_listen(listen.get_ref())
            .map_err(|message| source.invalid(Some(listen.span()), "admin.listen", message))?;
        check_distinct(address, server_listen)
            .map_err(|message| source.invalid(Some(listen.span()), "admin.listen", message))?;
        if let Some(tls) = &self.tls
            && tls.reload_interval.0.is_zero()
        {
            return Err(source.invalid(
                Some(tls.cert.span()),
                "admin.tls.reload_interval",
                "must be greater than zero",
            ));
        }
        Ok(Some(address))
    }
}

/// The admin listener must never be the public MCP port: the same address (or the same port
/// on a wildcard address) would either fail to bind or, worse, serve `/api` to MCP clients.
pub(crate) fn check_distinct(admin: SocketAddr, server: SocketAddr) -> Result<(), String> {
    // Port 0 asks the system for a free port, never the same one twice.
    let overlaps = admin.port() != 0
        && admin.port() == server.port()
        && (admin.ip() == server.ip() || admin.ip().is_unspecified() || server.ip().is_unspecified());
    if overlaps {
        Err(format!("the admin listener {admin} must not be the MCP listener {server}: give it another port"))
    } else {
        Ok(())
    }
}

impl AuditConfig {
    /// The validated table, or `None` when no audit log is configured.
    pub(crate) fn validate(&self, source: &Source) -> Result<Option<AuditSpec>, ConfigError> {
        let Some(file) = &self.file else {
            if self.max_size.is_some() || self.keep.is_some() || self.arguments {
                return Err(source.invalid(
                    None,
                    "audit.file",
                    "[audit] has settings but no `file` (a path or \"stderr\")",
                ));
            }
            return Ok(None);
        };
        let text = file.get_ref().0.trim();
        if text.is_empty() {
            return Err(source.invalid(Some(file.span()), "audit.file", "must be a path or \"stderr\""));
        }
        let target = if text == "stderr" {
            AuditTarget::Stderr
        } else {
            let path = PathBuf::from(text);
            // Relative to the configuration file, as the TLS files are.
            let base = source.path.as_deref().and_then(std::path::Path::parent);
            AuditTarget::File(match base {
                Some(base) if path.is_relative() => base.join(path),
                _ => path,
            })
        };
        let max_size = match &self.max_size {
            None => None,
            Some(size) => {
                let bytes = parse_bytes(size.get_ref())
                    .ok()
                    .and_then(|n| u64::try_from(n).ok())
                    .filter(|n| *n >= 1024)
                    .ok_or_else(|| {
                        source.invalid(
                            Some(size.span()),
                            "audit.max_size",
                            format!("`{}` is not a size of at least 1k such as \"100m\"", size.get_ref()),
                        )
                    })?;
                if target == AuditTarget::Stderr {
                    return Err(source.invalid(
                        Some(size.span()),
                        "audit.max_size",
                        "standard error cannot be rotated",
                    ));
                }
                Some(bytes)
            }
        };
        Ok(Some(AuditSpec { target, max_size, keep: self.keep.unwrap_or(5), arguments: self.arguments }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_listener_is_never_the_mcp_port() {
        let table = [
            ("127.0.0.1:9180", "127.0.0.1:8080", true),
            ("127.0.0.1:8080", "127.0.0.1:8080", false),
            ("0.0.0.0:8080", "127.0.0.1:8080", false),
            ("127.0.0.1:8080", "0.0.0.0:8080", false),
            ("127.0.0.2:8080", "127.0.0.1:8080", true),
            ("127.0.0.1:0", "127.0.0.1:0", true),
        ];
        for (admin, server, ok) in table {
            assert_eq!(check_distinct(admin.parse().unwrap(), server.parse().unwrap()).is_ok(), ok, "{admin} {server}");
        }
    }
}
