//! The little of JSON-RPC 2.0 the relay needs to know: what kind a message is, and how to
//! build an error. Everything else in a message passes through untouched.

use serde_json::{Value, json};

/// JSON-RPC error: the server (backend) failed or went away.
pub(crate) const BACKEND_ERROR: i64 = -32000;
/// JSON-RPC error: the request timed out in berth.
pub(crate) const TIMEOUT: i64 = -32001;
/// JSON-RPC error: method not found.
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC error: invalid params.
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC error: invalid request.
pub(crate) const INVALID_REQUEST: i64 = -32600;

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
