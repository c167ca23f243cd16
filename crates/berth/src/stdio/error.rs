//! Why a stdio backend could not answer a request itself: one vocabulary for every refusal the
//! relay, the instances and the endpoint give, each knowing its HTTP status and JSON-RPC code.

use std::time::Duration;

use http::StatusCode;

use crate::jsonrpc;

/// A refusal of a stdio backend (the server's own errors pass through as the server wrote them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StdioError {
    /// The instance is between runs (waiting to restart after a crash or failed start).
    #[error("backend `{backend}` is not ready: {reason}")]
    NotReady {
        /// The backend.
        backend: String,
        /// The last reason it went down.
        reason: String,
    },
    /// The instance did not finish starting in time.
    #[error("backend `{backend}` did not become ready within {within:?}")]
    Starting {
        /// The backend.
        backend: String,
        /// How long berth waited.
        within: Duration,
    },
    /// The process or container exited, closed its stdout, or broke the protocol, while the
    /// request was in flight.
    #[error("backend `{backend}` failed: {reason}")]
    Crashed {
        /// The backend.
        backend: String,
        /// What happened.
        reason: String,
    },
    /// The instance is stopping (shutdown, session end).
    #[error("backend `{0}` is stopping")]
    Stopped(String),
    /// No answer within `request_timeout` (progress notifications restart the clock).
    #[error("`{method}` timed out after {after:?} without an answer from backend `{backend}`")]
    Timeout {
        /// The backend.
        backend: String,
        /// The request's method.
        method: String,
        /// The request timeout.
        after: Duration,
    },
    /// Every per-session instance slot is taken (`max_instances`).
    #[error("backend `{backend}` runs its maximum of {max} instances (max_instances); try again later")]
    Overloaded {
        /// The backend.
        backend: String,
        /// The limit.
        max: usize,
    },
    /// The process or container could not be started, or refused the initialize handshake.
    #[error("backend `{backend}` could not start: {reason}")]
    Launch {
        /// The backend.
        backend: String,
        /// Why.
        reason: String,
    },
    /// The request's session ended (DELETE, idle expiry) before it was answered.
    #[error("the session ended before the request was answered")]
    SessionEnded,
    /// The server sent an answer that is not valid JSON-RPC for this request.
    #[error("backend `{backend}` sent an invalid answer: {reason}")]
    BadAnswer {
        /// The backend.
        backend: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl StdioError {
    /// The HTTP status of a JSON answer that carries only this error: whose fault it was.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            // Not serving now, try again later: starting, restarting, cannot start, full.
            Self::NotReady { .. }
            | Self::Starting { .. }
            | Self::Stopped(_)
            | Self::Overloaded { .. }
            | Self::Launch { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // The server failed this very request.
            Self::Crashed { .. } | Self::BadAnswer { .. } => StatusCode::BAD_GATEWAY,
            // As for any request of a session that is gone.
            Self::SessionEnded => StatusCode::NOT_FOUND,
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

    /// The JSON-RPC error response answering the request whose id is `id` (raw JSON).
    pub(crate) fn answer(&self, id: &[u8]) -> bytes::Bytes {
        jsonrpc::error(id, self.code(), &self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let backend = || "fx".to_string();
        let table = [
            (StdioError::NotReady { backend: backend(), reason: "r".into() }, 503, -32000),
            (StdioError::Starting { backend: backend(), within: Duration::from_secs(1) }, 503, -32000),
            (StdioError::Crashed { backend: backend(), reason: "r".into() }, 502, -32000),
            (StdioError::Stopped(backend()), 503, -32000),
            (
                StdioError::Timeout { backend: backend(), method: "m".into(), after: Duration::from_secs(1) },
                504,
                -32001,
            ),
            (StdioError::Overloaded { backend: backend(), max: 8 }, 503, -32000),
            (StdioError::Launch { backend: backend(), reason: "r".into() }, 503, -32000),
            (StdioError::BadAnswer { backend: backend(), reason: "r".into() }, 502, -32000),
            (StdioError::SessionEnded, 404, -32000),
        ];
        for (error, status, code) in table {
            assert_eq!(error.status().as_u16(), status, "{error}");
            assert_eq!(error.code(), code, "{error}");
            let answer = crate::jsonrpc::Message::parse(error.answer(b"\"x\"")).unwrap();
            assert_eq!(answer.id(), Some("\"x\""));
        }
    }
}
