//! The configuration as `GET /api/config` shows it: every setting in effect, defaults included,
//! with secrets replaced by `[redacted]`.
//!
//! The redaction is part of the configuration's own serialization (`config/values.rs`):
//! passwords, password hashes and token digests serialize as `[redacted]`, and a server's
//! environment as its variable names only, so that no route can show them by forgetting to
//! filter; this module adds where the configuration came from.

use serde_json::{Value, json};

use crate::config::Config;

/// The configuration in effect, redacted, and its file.
pub(crate) fn config(config: &Config) -> Value {
    let settings = serde_json::to_value(config).unwrap_or_else(|error| json!({ "error": error.to_string() }));
    json!({
        "file": config.source.path.as_ref().map(|path| path.display().to_string()),
        "config": settings,
    })
}
