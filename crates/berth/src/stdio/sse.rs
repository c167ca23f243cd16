//! Answers in the two forms Streamable HTTP allows: one JSON body, or an SSE stream.

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use futures::stream;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::body::{ResponseBody, response_body};
use crate::{
    jsonrpc::{self, Kind},
    mcp_headers::SESSION_HEADER,
};

/// A JSON response carrying one message.
pub(crate) fn json(status: StatusCode, message: &Value, session: Option<&str>) -> Response<ResponseBody> {
    let mut response = Response::new(response_body(serde_json::to_vec(message).expect("a Value serializes")));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(session) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(SESSION_HEADER, session);
    }
    response
}

/// `202 Accepted` for a POST that held no request.
pub(crate) fn accepted() -> Response<ResponseBody> {
    let mut response = Response::new(response_body(""));
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

fn event(message: &Value) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"event: message\ndata: ");
    serde_json::to_writer(&mut out, message).expect("a Value serializes");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

struct StreamState {
    first: Option<Value>,
    messages: mpsc::Receiver<Value>,
    /// Responses still owed on this stream; `None` for a GET stream, which never completes.
    remaining: Option<usize>,
    ticker: tokio::time::Interval,
    shutdown: CancellationToken,
}

/// An SSE response that relays `messages` (after `first`, if any), ends after `remaining`
/// responses (never, for `None`), at shutdown, or when the channel closes, and sends a
/// keep-alive comment every `keep_alive` so that proxies do not time the stream out.
pub(crate) fn sse(
    first: Option<Value>,
    messages: mpsc::Receiver<Value>,
    remaining: Option<usize>,
    keep_alive: Duration,
    shutdown: CancellationToken,
) -> Response<ResponseBody> {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = StreamState { first, messages, remaining, ticker, shutdown };
    let body = stream::unfold(state, |mut state| async move {
        if state.remaining == Some(0) {
            return None;
        }
        let message = match state.first.take() {
            Some(message) => message,
            None => tokio::select! {
                message = state.messages.recv() => message?,
                _ = state.ticker.tick() => return Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(KEEP_ALIVE))), state)),
                () = state.shutdown.cancelled() => return None,
            },
        };
        if jsonrpc::kind(&message) == Some(Kind::Response)
            && let Some(remaining) = state.remaining.as_mut()
        {
            *remaining = remaining.saturating_sub(1);
        }
        Some((Ok(Frame::data(event(&message))), state))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(body)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The HTTP status of a stateless (2026-07-28) request's error: the generation maps protocol
/// errors to statuses so that intermediaries see them without reading bodies.
fn stateless_status(message: &Value) -> StatusCode {
    match message.pointer("/error/code").and_then(Value::as_i64) {
        Some(jsonrpc::UNSUPPORTED_PROTOCOL_VERSION..=jsonrpc::HEADER_MISMATCH) => StatusCode::BAD_REQUEST,
        Some(jsonrpc::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

/// The answer to a POST holding `expected` requests: JSON when the first message is the only
/// response owed (the common, cheapest case), otherwise an SSE stream. It is not cut short at
/// shutdown: the relay answers every request (a result, a timeout, or an error when the
/// instance stops after the drain).
pub(crate) async fn answer(
    mut messages: mpsc::Receiver<Value>,
    expected: usize,
    stateless: bool,
    keep_alive: Duration,
) -> Response<ResponseBody> {
    let Some(first) = messages.recv().await else {
        let error = jsonrpc::error(Value::Null, jsonrpc::BACKEND_ERROR, "the backend went away");
        return json(StatusCode::BAD_GATEWAY, &error, None);
    };
    if expected == 1 && jsonrpc::kind(&first) == Some(Kind::Response) {
        let status = if stateless { stateless_status(&first) } else { StatusCode::OK };
        return json(status, &first, None);
    }
    sse(Some(first), messages, Some(expected), keep_alive, CancellationToken::new())
}
