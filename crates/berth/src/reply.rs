//! Rejections: the JSON answers berth gives when it refuses a request itself.
//!
//! A rejection is always a `Response`, never an `Err`: an error that reaches hyper drops the
//! connection without an answer. Where the JSON-RPC id of the refused message is known the body
//! is a JSON-RPC error object, so that MCP clients can match it to their request; otherwise it is
//! a small plain JSON object.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::{
    body::{ResponseBody, response_body},
    jsonrpc::INVALID_REQUEST,
};

/// A refusal berth answers itself, before or instead of a backend.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    status: StatusCode,
    error: &'static str,
    message: String,
    /// The refused request's id as written (raw JSON), kept exactly: ids too large for any
    /// integer type must come back as the client sent them.
    id: Option<Bytes>,
    code: i64,
    data: serde_json::Map<String, Value>,
}

impl Rejection {
    /// A refusal with an HTTP status, a short machine-readable `error` slug and a message for
    /// humans.
    pub(crate) fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self { status, error, message: message.into(), id: None, code: INVALID_REQUEST, data: serde_json::Map::new() }
    }

    /// Sets the JSON-RPC id of the refused request as written (raw JSON), turning the body into a
    /// JSON-RPC error.
    pub(crate) fn with_raw_id(mut self, id: Bytes) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the JSON-RPC error code used when the body is a JSON-RPC error object.
    pub(crate) fn with_code(mut self, code: i64) -> Self {
        self.code = code;
        self
    }

    /// Adds a field to the `data` of the JSON-RPC error object.
    pub(crate) fn with_data(mut self, key: &str, value: Value) -> Self {
        self.data.insert(key.to_string(), value);
        self
    }

    /// Builds the HTTP response.
    pub(crate) fn into_response(self) -> Response<ResponseBody> {
        match self.id {
            Some(id) => {
                let mut data = self.data;
                data.insert("error".to_string(), Value::from(self.error));
                let error = json!({ "code": self.code, "message": self.message, "data": data });
                let body = format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{error}}}", String::from_utf8_lossy(&id));
                bytes_response(self.status, Bytes::from(body))
            }
            None => json_response(self.status, &json!({ "error": self.error, "message": self.message })),
        }
    }
}

/// The `404` of a session berth does not know, or that belongs to another identity: the two are
/// answered alike, so that a session id cannot be probed for whether it exists. `id` is the
/// refused request's JSON-RPC id as written, `null` when there is none.
pub(crate) fn unknown_session(id: Option<Bytes>) -> Response<ResponseBody> {
    Rejection::new(StatusCode::NOT_FOUND, "not_found", "session not found: it ended or expired; initialize again")
        .with_raw_id(id.unwrap_or_else(|| Bytes::from_static(b"null")))
        .into_response()
}

/// A JSON response with the given status.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    bytes_response(status, Bytes::from(body.to_string()))
}

fn bytes_response(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(response_body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: Response<ResponseBody>) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_known_id_gives_a_jsonrpc_error_object() {
        let response = Rejection::new(StatusCode::NOT_ACCEPTABLE, "not_acceptable", "nope")
            .with_raw_id(Bytes::from_static(b"7"))
            .into_response();
        assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
        let body = body_json(response).await;
        assert_eq!(body["jsonrpc"], "2.0");
        assert_eq!(body["id"], 7);
        assert_eq!(body["error"]["code"], INVALID_REQUEST);
        assert_eq!(body["error"]["message"], "nope");
    }

    #[tokio::test]
    async fn an_unknown_id_gives_plain_json() {
        let response = Rejection::new(StatusCode::NOT_FOUND, "unknown_backend", "no such").into_response();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = body_json(response).await;
        assert_eq!(body, json!({"error": "unknown_backend", "message": "no such"}));
    }
}
