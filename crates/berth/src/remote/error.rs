//! Why an http backend could not relay a request: one vocabulary for its own refusals, each
//! knowing its HTTP status and JSON-RPC code (the upstream's own answers pass through as it
//! wrote them).

use std::time::Duration;

use http::StatusCode;

use crate::jsonrpc;

/// A refusal of an http backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RemoteError {
    /// No connection could be made (refused, no route, DNS, TLS).
    #[error("backend `{backend}` is unreachable: {reason}")]
    Unreachable {
        /// The backend.
        backend: String,
        /// What the connection attempt ended with.
        reason: String,
    },
    /// The connection, or the head of the answer, took longer than allowed.
    #[error("backend `{backend}` did not answer within {after:?} ({setting})")]
    Timeout {
        /// The backend.
        backend: String,
        /// How long berth waited.
        after: Duration,
        /// The setting that bounds it: `connect_timeout` or `request_timeout`.
        setting: &'static str,
    },
    /// The connection broke during the exchange.
    #[error("backend `{backend}` failed: {reason}")]
    Failed {
        /// The backend.
        backend: String,
        /// What happened.
        reason: String,
    },
}

impl RemoteError {
    /// The HTTP status of the answer carrying this error: the upstream's fault, as a gateway says.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Unreachable { .. } | Self::Failed { .. } => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The JSON-RPC error code.
    pub(crate) fn code(&self) -> i64 {
        match self {
            Self::Timeout { .. } => jsonrpc::TIMEOUT,
            _ => jsonrpc::BACKEND_ERROR,
        }
    }

    /// The machine-readable slug of the error's `data`.
    pub(crate) fn slug(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "backend_unreachable",
            Self::Timeout { .. } => "backend_timeout",
            Self::Failed { .. } => "backend_error",
        }
    }

    /// Whether it says the upstream is down (rather than slow with one request).
    pub(crate) fn is_down(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Timeout { setting: "connect_timeout", .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let backend = || "up".to_string();
        let table = [
            (RemoteError::Unreachable { backend: backend(), reason: "refused".into() }, 502, -32000, true),
            (RemoteError::Failed { backend: backend(), reason: "reset".into() }, 502, -32000, false),
            (
                RemoteError::Timeout { backend: backend(), after: Duration::from_secs(1), setting: "request_timeout" },
                504,
                -32001,
                false,
            ),
            (
                RemoteError::Timeout { backend: backend(), after: Duration::from_secs(1), setting: "connect_timeout" },
                504,
                -32001,
                true,
            ),
        ];
        for (error, status, code, down) in table {
            assert_eq!((error.status().as_u16(), error.code(), error.is_down()), (status, code, down), "{error}");
        }
    }
}
