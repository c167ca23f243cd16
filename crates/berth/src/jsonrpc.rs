//! JSON-RPC 2.0 as berth needs it: every error code berth answers with (this is the only place
//! that defines them), the kinds of message, and how to build an error or a result. Everything
//! else in a message passes through untouched.

mod message;

use bytes::{BufMut, Bytes, BytesMut};

pub(crate) use message::{Body, IdKey, Invalid, Message};

/// The body is not JSON.
pub(crate) const PARSE_ERROR: i64 = -32700;
/// The message is not an acceptable JSON-RPC request as sent.
pub(crate) const INVALID_REQUEST: i64 = -32600;
/// The method does not exist (or is not offered to this client).
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
/// The params are invalid (a stateless request without its `_meta`, or a message that rmcp
/// cannot read as its method's params).
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// berth itself failed.
pub(crate) const INTERNAL_ERROR: i64 = -32603;
/// The backend failed, went away, or could not start.
pub(crate) const BACKEND_ERROR: i64 = -32000;
/// The request timed out in berth without an answer from the backend.
pub(crate) const TIMEOUT: i64 = -32001;
/// SEP-2243 `HeaderMismatch`: a 2026-07-28 header contradicts the body.
pub(crate) const HEADER_MISMATCH: i64 = -32020;
/// SEP-2575 `UnsupportedProtocolVersionError`.
pub(crate) const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// The three shapes of a JSON-RPC message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Has `method` and `id`.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `result` or `error`, and `id`.
    Response,
}

/// A JSON-RPC error response to the request whose id is `id` (raw JSON text, `null` when the
/// id is unknown).
pub(crate) fn error(id: &[u8], code: i64, message: &str) -> Bytes {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".to_string());
    let mut out = BytesMut::with_capacity(64 + id.len() + message.len());
    out.put_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.put_slice(id);
    out.put_slice(b",\"error\":{\"code\":");
    out.put_slice(code.to_string().as_bytes());
    out.put_slice(b",\"message\":");
    out.put_slice(message.as_bytes());
    out.put_slice(b"}}");
    out.freeze()
}

/// A JSON-RPC result response: `result` is raw JSON text.
pub(crate) fn result(id: &[u8], result: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(40 + id.len() + result.len());
    out.put_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.put_slice(id);
    out.put_slice(b",\"result\":");
    out.put_slice(result.as_bytes());
    out.put_slice(b"}");
    out.freeze()
}

/// A notification berth sends itself: `params` is raw JSON text.
pub(crate) fn notification(method: &str, params: &str) -> Bytes {
    let method = serde_json::to_string(method).unwrap_or_default();
    Bytes::from(format!("{{\"jsonrpc\":\"2.0\",\"method\":{method},\"params\":{params}}}"))
}

/// A request berth sends itself: `params` is raw JSON text.
pub(crate) fn request(id: u64, method: &str, params: &str) -> Bytes {
    let method = serde_json::to_string(method).unwrap_or_default();
    Bytes::from(format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":{method},\"params\":{params}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_berth_writes_is_valid_jsonrpc() {
        let table = [
            (error(b"\"a\"", TIMEOUT, "timed \"out\"\n"), Kind::Response),
            (error(b"null", PARSE_ERROR, "bad"), Kind::Response),
            (result(b"7", "{}"), Kind::Response),
            (notification("notifications/cancelled", r#"{"requestId":3}"#), Kind::Notification),
            (request(0, "initialize", "{}"), Kind::Request),
        ];
        for (bytes, kind) in table {
            let message = Message::parse(bytes.clone()).unwrap_or_else(|e| panic!("{bytes:?}: {e}"));
            assert_eq!(message.kind(), kind);
        }
        let message = Message::parse(error(b"9", TIMEOUT, "x")).unwrap();
        assert_eq!(
            message.find(&["error", "code"]).map(|span| message.raw(&span).to_string()).as_deref(),
            Some("-32001")
        );
    }
}
