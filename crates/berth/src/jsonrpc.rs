//! JSON-RPC 2.0 as berth needs it: every error code berth answers with (this is the only place
//! that defines them), the kinds of message, and how to build an error or a result. Everything
//! else in a message passes through untouched.

use serde_json::{Value, json};

/// The body is not JSON.
pub(crate) const PARSE_ERROR: i64 = -32700;
/// The message is not an acceptable JSON-RPC request as sent.
pub(crate) const INVALID_REQUEST: i64 = -32600;
/// The method does not exist (or is not offered to this client).
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
/// The params are invalid (a stateless request without its `_meta`).
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

/// Classifies a message; `None` for anything that is not JSON-RPC.
pub(crate) fn kind(message: &Value) -> Option<Kind> {
    let object = message.as_object()?;
    match (object.get("method").is_some_and(Value::is_string), object.contains_key("id")) {
        (true, true) => Some(Kind::Request),
        (true, false) => Some(Kind::Notification),
        (false, true) if object.contains_key("result") || object.contains_key("error") => Some(Kind::Response),
        _ => None,
    }
}

/// The `method` of a request or notification.
pub(crate) fn method(message: &Value) -> Option<&str> {
    message.get("method").and_then(Value::as_str)
}

/// A JSON-RPC error response.
pub(crate) fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

/// A JSON-RPC result response.
pub(crate) fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// `params._meta.progressToken`, if the request asks for progress.
pub(crate) fn progress_token(message: &Value) -> Option<&Value> {
    message.get("params")?.get("_meta")?.get("progressToken")
}

/// Replaces `params._meta.progressToken` (which must exist).
pub(crate) fn set_progress_token(message: &mut Value, token: Value) {
    if let Some(slot) = message.pointer_mut("/params/_meta/progressToken") {
        *slot = token;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let table = [
            (json!({"jsonrpc":"2.0","id":1,"method":"ping"}), Some(Kind::Request)),
            (json!({"jsonrpc":"2.0","method":"notifications/initialized"}), Some(Kind::Notification)),
            (json!({"jsonrpc":"2.0","id":1,"result":{}}), Some(Kind::Response)),
            (json!({"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}), Some(Kind::Response)),
            (json!({"jsonrpc":"2.0","id":1}), None),
            (json!([1, 2]), None),
        ];
        for (message, expected) in table {
            assert_eq!(kind(&message), expected, "{message}");
        }
    }

    #[test]
    fn progress_tokens() {
        let mut request = json!({"id":1,"method":"tools/call","params":{"_meta":{"progressToken":"abc","x":1}}});
        assert_eq!(progress_token(&request), Some(&json!("abc")));
        set_progress_token(&mut request, json!(42));
        assert_eq!(request["params"]["_meta"], json!({"progressToken":42,"x":1}));
        assert_eq!(progress_token(&json!({"id":1,"method":"ping"})), None);
    }
}
