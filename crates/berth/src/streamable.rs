//! The transport rules of MCP Streamable HTTP, applied to every `/<name>/mcp` route whatever
//! the backend, so that a stdio server in a container answers a malformed request exactly as a
//! native one does.
//!
//! - `POST` must accept both `application/json` and `text/event-stream` (406), carry an
//!   `application/json` body (415) no larger than the limit (413) that arrives within the body
//!   deadline (408);
//! - the body must be JSON (400, -32700) and an acceptable JSON-RPC message or batch (400,
//!   -32600); a batch only where the request's protocol version allows one, at most
//!   `mcp_headers::MAX_BATCH` messages;
//! - `GET` must accept `text/event-stream` (406);
//! - an `MCP-Protocol-Version` that no generation of the protocol defines gets 400 (-32022);
//! - a 2026-07-28 request's `Mcp-Method`, `Mcp-Name` and version headers must agree with its
//!   body (400, -32020);
//! - other methods get 405 with `Allow`.
//!
//! The layer buffers `POST` bodies (bounded by the limit): a JSON-RPC message is only useful
//! whole, and the buffered body lets a refusal carry the JSON-RPC id of the refused request. The
//! body it parsed travels on as [`ParsedBody`], so that the stdio backends do not parse it again.

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use rmcp::model::ProtocolVersion;
use serde_json::Value;
use tower_http::auth::{AsyncAuthorizeRequest, AsyncRequireAuthorizationLayer};

use crate::{
    body::{RequestBody, ResponseBody, request_body},
    extensions::ParsedBody,
    jsonrpc::{self, Body, HEADER_MISMATCH, INVALID_REQUEST, PARSE_ERROR, UNSUPPORTED_PROTOCOL_VERSION},
    mcp_headers::{self, PROTOCOL_VERSION_HEADER},
    reply::Rejection,
};

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// The transport rules as tower-http's asynchronous request check: a `POST` body must be read
/// (bounded) before it can be judged, so this cannot be a synchronous `ValidateRequest`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransportRules {
    max_body_bytes: usize,
}

/// What [`TransportRules`] answers: the request (its body buffered), or the refusal.
type Checked = Result<Request<RequestBody>, Response<ResponseBody>>;

impl AsyncAuthorizeRequest<RequestBody> for TransportRules {
    type RequestBody = RequestBody;
    type ResponseBody = ResponseBody;
    type Future = BoxFuture<'static, Checked>;

    fn authorize(&mut self, request: Request<RequestBody>) -> Self::Future {
        Box::pin(check(request, self.max_body_bytes))
    }
}

/// The layer enforcing the transport rules, with a body limit of `max_body_bytes`.
pub(crate) fn layer(max_body_bytes: usize) -> AsyncRequireAuthorizationLayer<TransportRules> {
    AsyncRequireAuthorizationLayer::new(TransportRules { max_body_bytes })
}

/// The media types a request accepts: essences of the `Accept` entries whose weight is not 0.
fn accepts(headers: &HeaderMap, wanted: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|entry| {
            let mut parts = entry.split(';');
            let essence = parts.next().unwrap_or("").trim();
            let zero_weight = parts.any(|param| {
                param
                    .split_once('=')
                    .is_some_and(|(name, value)| name.trim().eq_ignore_ascii_case("q") && is_zero(value.trim()))
            });
            essence.eq_ignore_ascii_case(wanted) && !zero_weight
        })
}

fn is_zero(weight: &str) -> bool {
    weight.parse::<f32>().is_ok_and(|q| q == 0.0)
}

/// Whether the request says its body is `application/json`.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(JSON))
}

/// Checks the `MCP-Protocol-Version` header against every version rmcp knows.
fn check_protocol_version(headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(value) = headers.get(PROTOCOL_VERSION_HEADER) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    if ProtocolVersion::KNOWN_VERSIONS.iter().any(|known| known.as_str() == text) {
        return Ok(());
    }
    let known: Vec<&str> = ProtocolVersion::KNOWN_VERSIONS.iter().map(|v| v.as_str()).collect();
    // The shape of SEP-2575's UnsupportedProtocolVersionError, so that a client can pick a
    // version it shares with the server and retry.
    Err(Rejection::new(
        StatusCode::BAD_REQUEST,
        "unsupported_protocol_version",
        format!("MCP-Protocol-Version `{text}` is not supported (supported: {})", known.join(", ")),
    )
    .with_code(UNSUPPORTED_PROTOCOL_VERSION)
    .with_data("requested", Value::from(text))
    .with_data("supported", Value::from(known)))
}

/// The JSON-RPC id of the body's first message, as written, if it has a usable one.
fn jsonrpc_id(body: &Result<Body, jsonrpc::Invalid>) -> Option<Bytes> {
    match body {
        Ok(body) => body.messages().first().and_then(jsonrpc::Message::id_bytes),
        Err(invalid) => invalid.id.clone(),
    }
}

/// The 413 of a body over `limit` bytes.
pub(crate) fn too_large(limit: usize) -> Rejection {
    Rejection::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body exceeds the limit of {limit} bytes (server.max_body_bytes)"),
    )
}

/// Reads a body up to `limit` bytes.
pub(crate) async fn read_bounded(body: RequestBody, limit: usize) -> Result<Bytes, Rejection> {
    let mut body = body;
    // The common body is one frame: kept as it is, without a copy.
    let mut first: Option<Bytes> = None;
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            if error.is_timeout() {
                return Rejection::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", error.to_string());
            }
            Rejection::new(StatusCode::BAD_REQUEST, "bad_body", format!("could not read the request body: {error}"))
        })?;
        if let Ok(data) = frame.into_data() {
            let held = first.as_ref().map_or(0, Bytes::len) + buffer.len();
            if held + data.len() > limit {
                return Err(too_large(limit));
            }
            match first.take() {
                None if buffer.is_empty() => first = Some(data),
                earlier => {
                    if let Some(earlier) = earlier {
                        buffer.extend_from_slice(&earlier);
                    }
                    buffer.extend_from_slice(&data);
                }
            }
        }
    }
    Ok(first.unwrap_or_else(|| buffer.freeze()))
}

/// Checks a `POST` and buffers its body.
async fn check_post(request: Request<RequestBody>, limit: usize) -> Result<Request<RequestBody>, Rejection> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit));
    }
    let (parts, body) = request.into_parts();
    let bytes = read_bounded(body, limit).await?;
    let headers = &parts.headers;
    let parsed = Body::parse(bytes.clone());
    let id = jsonrpc_id(&parsed);
    let reject = |rejection: Rejection| match &id {
        Some(id) => Err(rejection.with_raw_id(id.clone())),
        None => Err(rejection),
    };
    if !(accepts(headers, JSON) && accepts(headers, EVENT_STREAM)) {
        return reject(Rejection::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "the client must accept both application/json and text/event-stream",
        ));
    }
    if !is_json(headers) {
        return reject(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be application/json",
        ));
    }
    if let Err(rejection) = check_protocol_version(headers) {
        return reject(rejection);
    }
    let body = parsed.map_err(|invalid| {
        let (slug, code) =
            if invalid.not_json { ("parse_error", PARSE_ERROR) } else { ("invalid_request", INVALID_REQUEST) };
        Rejection::new(StatusCode::BAD_REQUEST, slug, invalid.reason.clone())
            .with_raw_id(invalid.id.unwrap_or_else(|| Bytes::from_static(b"null")))
            .with_code(code)
    })?;
    let version = mcp_headers::protocol_version(headers);
    if let Body::Batch(messages) = &body {
        if version.is_some_and(|v| !mcp_headers::allows_batches(v)) {
            return reject(Rejection::new(StatusCode::BAD_REQUEST, "batch_refused", mcp_headers::BATCH_REFUSED));
        }
        if messages.len() > mcp_headers::MAX_BATCH {
            let reason =
                format!("a batch of {} messages exceeds the limit of {}", messages.len(), mcp_headers::MAX_BATCH);
            return reject(Rejection::new(StatusCode::BAD_REQUEST, "batch_too_large", reason));
        }
    }
    if version.is_some_and(|v| v >= mcp_headers::STANDARD_HEADERS_VERSION) {
        // Only the newest generation routes on headers: they must agree with the body.
        for message in body.messages() {
            if let Err(reason) = mcp_headers::check(headers, message) {
                return reject(
                    Rejection::new(StatusCode::BAD_REQUEST, "header_mismatch", reason).with_code(HEADER_MISMATCH),
                );
            }
        }
    }
    let mut parts = parts;
    parts.extensions.insert(ParsedBody(body));
    Ok(Request::from_parts(parts, request_body(bytes)))
}

async fn check(request: Request<RequestBody>, limit: usize) -> Result<Request<RequestBody>, Response<ResponseBody>> {
    match *request.method() {
        Method::POST => check_post(request, limit).await.map_err(Rejection::into_response),
        Method::GET => {
            if !accepts(request.headers(), EVENT_STREAM) {
                return Err(Rejection::new(
                    StatusCode::NOT_ACCEPTABLE,
                    "not_acceptable",
                    "a GET stream requires Accept: text/event-stream",
                )
                .into_response());
            }
            check_protocol_version(request.headers()).map_err(Rejection::into_response)?;
            Ok(request)
        }
        Method::DELETE => {
            check_protocol_version(request.headers()).map_err(Rejection::into_response)?;
            Ok(request)
        }
        _ => {
            let mut response = Rejection::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "an MCP endpoint answers GET, POST and DELETE",
            )
            .into_response();
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            Err(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::response_body;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    const BOTH: &str = "application/json, text/event-stream";
    const JSON_CT: (&str, &str) = ("content-type", "application/json");
    const PING: &str = r#"{"jsonrpc":"2.0","id":42,"method":"ping"}"#;

    struct Case {
        method: Method,
        headers: &'static [(&'static str, &'static str)],
        body: &'static str,
        status: u16,
        jsonrpc_id: Option<i64>,
    }

    async fn run(case: &Case) -> (u16, Value) {
        let service =
            ServiceBuilder::new().layer(layer(64)).service(service_fn(|request: Request<RequestBody>| async move {
                let bytes = request.into_body().collect().await.unwrap().to_bytes();
                Ok::<_, std::convert::Infallible>(Response::new(response_body(bytes)))
            }));
        let mut request = Request::builder().method(case.method.clone()).uri("/x/mcp");
        for (name, value) in case.headers {
            request = request.header(*name, *value);
        }
        let response = service.oneshot(request.body(request_body(case.body)).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A body in several frames is joined in order; one frame is kept as it is; the limit holds
    /// across frames.
    #[tokio::test]
    async fn bodies_are_read_whole_and_bounded() {
        let frames = |parts: &'static [&'static str]| {
            let stream = futures::stream::iter(parts.iter().map(|part| {
                Ok::<_, crate::body::BodyError>(http_body::Frame::data(Bytes::from_static(part.as_bytes())))
            }));
            http_body_util::StreamBody::new(stream).boxed_unsync()
        };
        assert_eq!(read_bounded(frames(&["abc"]), 3).await.unwrap(), "abc");
        assert_eq!(read_bounded(frames(&["ab", "cd", "e"]), 5).await.unwrap(), "abcde");
        assert_eq!(read_bounded(frames(&[]), 5).await.unwrap(), "");
        let over = read_bounded(frames(&["ab", "cd", "ef"]), 5).await.unwrap_err();
        assert_eq!(over.into_response().status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(read_bounded(frames(&["abcdef"]), 5).await.is_err());
    }

    #[tokio::test]
    async fn transport_rules() {
        let cases = [
            Case {
                method: Method::POST,
                headers: &[("accept", BOTH), JSON_CT],
                body: PING,
                status: 200,
                jsonrpc_id: None,
            },
            Case {
                method: Method::POST,
                headers: &[
                    ("accept", "text/event-stream, application/json;q=0.9"),
                    ("content-type", "application/json; charset=utf-8"),
                ],
                body: PING,
                status: 200,
                jsonrpc_id: None,
            },
            Case {
                method: Method::POST,
                headers: &[("accept", "application/json"), JSON_CT],
                body: PING,
                status: 406,
                jsonrpc_id: Some(42),
            },
            Case {
                method: Method::POST,
                headers: &[("accept", "*/*"), JSON_CT],
                body: PING,
                status: 406,
                jsonrpc_id: Some(42),
            },
            Case {
                method: Method::POST,
                headers: &[("accept", "application/json, text/event-stream;q=0"), JSON_CT],
                body: PING,
                status: 406,
                jsonrpc_id: Some(42),
            },
            Case { method: Method::POST, headers: &[JSON_CT], body: PING, status: 406, jsonrpc_id: Some(42) },
            Case {
                method: Method::POST,
                headers: &[("accept", BOTH), ("content-type", "text/plain")],
                body: PING,
                status: 415,
                jsonrpc_id: Some(42),
            },
            Case { method: Method::POST, headers: &[("accept", BOTH)], body: PING, status: 415, jsonrpc_id: Some(42) },
            Case {
                method: Method::POST,
                headers: &[("accept", BOTH), JSON_CT],
                body: r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"0123456789012345678901234567890123456789"}}"#,
                status: 413,
                jsonrpc_id: None,
            },
            Case {
                method: Method::POST,
                headers: &[("accept", BOTH), JSON_CT, ("content-length", "100000")],
                body: "",
                status: 413,
                jsonrpc_id: None,
            },
            Case {
                method: Method::POST,
                headers: &[("accept", BOTH), JSON_CT, ("mcp-protocol-version", "1999-01-01")],
                body: PING,
                status: 400,
                jsonrpc_id: Some(42),
            },
            Case {
                method: Method::POST,
                headers: &[("accept", BOTH), JSON_CT, ("mcp-protocol-version", "2026-07-28"), ("mcp-method", "ping")],
                body: PING,
                status: 200,
                jsonrpc_id: None,
            },
            Case {
                method: Method::POST,
                headers: &[("accept", BOTH), JSON_CT, ("mcp-protocol-version", "2026-07-28")],
                body: PING,
                status: 400,
                jsonrpc_id: Some(42),
            },
            Case {
                method: Method::POST,
                headers: &[
                    ("accept", BOTH),
                    JSON_CT,
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "tools/list"),
                ],
                body: PING,
                status: 400,
                jsonrpc_id: Some(42),
            },
            Case {
                method: Method::POST,
                headers: &[("accept", BOTH), JSON_CT],
                body: "{not json",
                status: 400,
                jsonrpc_id: None,
            },
            Case {
                method: Method::GET,
                headers: &[("accept", "text/event-stream")],
                body: "",
                status: 200,
                jsonrpc_id: None,
            },
            Case { method: Method::GET, headers: &[("accept", "*/*")], body: "", status: 406, jsonrpc_id: None },
            Case { method: Method::GET, headers: &[], body: "", status: 406, jsonrpc_id: None },
            Case {
                method: Method::GET,
                headers: &[("accept", "text/event-stream"), ("mcp-protocol-version", "2025-11-25")],
                body: "",
                status: 200,
                jsonrpc_id: None,
            },
            Case {
                method: Method::DELETE,
                headers: &[("mcp-protocol-version", "bogus")],
                body: "",
                status: 400,
                jsonrpc_id: None,
            },
            Case { method: Method::DELETE, headers: &[], body: "", status: 200, jsonrpc_id: None },
            Case { method: Method::PUT, headers: &[], body: "", status: 405, jsonrpc_id: None },
        ];
        for (index, case) in cases.iter().enumerate() {
            let (status, body) = run(case).await;
            assert_eq!(status, case.status, "case {index}: {body}");
            if let Some(id) = case.jsonrpc_id {
                assert_eq!(body["id"], id, "case {index}: {body}");
                assert_eq!(body["jsonrpc"], "2.0", "case {index}");
            } else if status >= 400 {
                assert!(body.get("error").is_some(), "case {index}: {body}");
            }
        }
    }
}
