//! `POST /api/backends/{name}/call`: one tool call, answered as plain JSON.
//!
//! berth opens a session of its own on the backend (initialize, initialized), calls the tool,
//! and ends the session, speaking to the backend exactly as the MCP route does (the same
//! [`Backend::handle`], through `own_session.rs`, which the REST face speaks too), so every kind
//! of backend is called alike. The session belongs to the admin who asked; the call is audited
//! as an admin action, not counted in the MCP metrics.

use std::{convert::Infallible, sync::Arc};

use http::{Extensions, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};
use tower::service_fn;

use crate::{
    backend::Backend,
    body::{RequestBody, ResponseBody},
    extensions::AuthenticatedUser,
    own_session::{Addressed, Answer, OwnSession, Refused},
    reply::{Rejection, json_response},
};

/// What the body asks for.
#[derive(Debug, PartialEq)]
struct Call {
    tool: String,
    arguments: Value,
}

fn bad_request(message: impl Into<String>) -> Response<ResponseBody> {
    Rejection::new(StatusCode::BAD_REQUEST, "invalid_call", message).into_response()
}

/// `{"tool": "...", "arguments": {...}}` (`arguments` optional).
fn parse_call(body: &[u8]) -> Result<Call, String> {
    let value: Value = serde_json::from_slice(body).map_err(|error| format!("the body is not JSON: {error}"))?;
    let Value::Object(mut object) = value else { return Err("the body must be a JSON object".into()) };
    let tool = match object.remove("tool") {
        Some(Value::String(tool)) if !tool.is_empty() => tool,
        _ => return Err("`tool` must be a non-empty string".into()),
    };
    let arguments = match object.remove("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(arguments @ Value::Object(_)) => arguments,
        Some(_) => return Err("`arguments` must be an object".into()),
    };
    if let Some(key) = object.keys().next() {
        return Err(format!("unknown field `{key}`: only `tool` and `arguments`"));
    }
    Ok(Call { tool, arguments })
}

/// Calls the tool the admin's `request` names on `backend`.
pub(crate) async fn call(backend: Arc<Backend>, request: Request<RequestBody>) -> Response<ResponseBody> {
    let user = request.extensions().get::<AuthenticatedUser>().cloned();
    let body = match Limited::new(request.into_body(), super::MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the call body is larger than 1 MiB")
                .into_response();
        }
    };
    let call = match parse_call(&body) {
        Ok(call) => call,
        Err(message) => return bad_request(message),
    };
    run(&backend, user, &call).await
}

/// Opens berth's own session on `backend` as `user`, calls the tool, and ends the session.
async fn run(backend: &Arc<Backend>, user: Option<AuthenticatedUser>, call: &Call) -> Response<ResponseBody> {
    let handler = Arc::clone(backend);
    let service = service_fn(move |request: Request<RequestBody>| {
        let backend = Arc::clone(&handler);
        async move { Ok::<_, Infallible>(backend.handle(request).await) }
    });
    let mut extensions = Extensions::new();
    if let Some(user) = user {
        extensions.insert(user);
    }
    let addressed =
        Addressed { path: format!("/{}/mcp", backend.name()), host: HeaderValue::from_static("localhost"), extensions };
    let mut session = OwnSession::new(service, addressed);
    if let Err(Refused(answer)) = session.open("berth-admin").await {
        return failed(backend, &answer, "initialize");
    }
    let answer = session.call_tool(&call.tool, &call.arguments).await;
    let response = match (answer.result(), answer.error()) {
        (Some(result), _) => {
            json_response(StatusCode::OK, &json!({"backend": backend.name(), "tool": call.tool, "result": result}))
        }
        // The backend refused the call itself (an unknown tool, invalid arguments).
        (None, Some(error)) if answer.status == StatusCode::OK => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"error": "tool_error", "message": error["message"], "jsonrpc_error": error}),
        ),
        _ => failed(backend, &answer, "tools/call"),
    };
    session.end().await;
    response
}

/// The backend refused or broke a step: its status when it is an error (a stopped or unready
/// backend's 503, say), else 502, with what it said.
fn failed(backend: &Backend, answer: &Answer, step: &str) -> Response<ResponseBody> {
    let status = if answer.status.is_client_error() || answer.status.is_server_error() {
        answer.status
    } else {
        StatusCode::BAD_GATEWAY
    };
    let message = format!("backend `{}` answered {step} with {}: {}", backend.name(), answer.status, answer.said());
    Rejection::new(status, "backend_failed", message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_body_is_a_tool_and_optional_arguments() {
        assert_eq!(
            parse_call(br#"{"tool":"echo","arguments":{"text":"hi"}}"#).unwrap().arguments,
            json!({"text": "hi"})
        );
        assert_eq!(parse_call(br#"{"tool":"pid"}"#).unwrap(), Call { tool: "pid".into(), arguments: json!({}) });
        for (body, said) in [
            (&b"nope"[..], "not JSON"),
            (b"[1]", "JSON object"),
            (br#"{"tool":""}"#, "non-empty string"),
            (br#"{"tool":3}"#, "non-empty string"),
            (br#"{"tool":"a","arguments":[1]}"#, "must be an object"),
            (br#"{"tool":"a","args":{}}"#, "unknown field `args`"),
        ] {
            let error = parse_call(body).unwrap_err();
            assert!(error.contains(said), "{error}");
        }
    }
}
