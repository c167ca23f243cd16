//! A tiny reverse proxy for tests: forwards every request to berth with an `Authorization`
//! header added, streaming responses back as they come (SSE included) and passing the client's
//! `Host` and `Origin` through untouched, as Traefik does by default.
//!
//! The official conformance CLI cannot send headers; this lets it test berth with
//! authentication on, rather than weakening berth for it.

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use futures::TryStreamExt;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{body::Frame, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};

type Body = BoxBody<Bytes, reqwest::Error>;

/// A running forwarder; it stops when dropped.
pub(crate) struct Forwarder {
    /// Where clients connect.
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const HOP_BY_HOP: [header::HeaderName; 4] =
    [header::CONNECTION, header::TRANSFER_ENCODING, header::CONTENT_LENGTH, header::AUTHORIZATION];

async fn forward(
    request: Request<Incoming>,
    client: reqwest::Client,
    upstream: SocketAddr,
    authorization: String,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = client.request(parts.method, format!("http://{upstream}{path}"));
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let response = match outgoing.header(header::AUTHORIZATION, authorization).body(bytes).send().await {
        Ok(response) => response,
        Err(_) => return Ok(status(StatusCode::BAD_GATEWAY)),
    };
    let mut builder = Response::builder().status(response.status());
    for (name, value) in response.headers() {
        if !HOP_BY_HOP.contains(name) {
            builder = builder.header(name, value);
        }
    }
    let stream = response.bytes_stream().map_ok(Frame::data);
    Ok(builder.body(BodyExt::boxed(StreamBody::new(stream))).expect("valid response"))
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed());
    *response.status_mut() = code;
    response
}

/// Starts a forwarder to `upstream` that adds `authorization` to every request.
pub(crate) async fn start(upstream: SocketAddr, authorization: String) -> Forwarder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let authorization = authorization.clone();
            tokio::spawn(async move {
                let service =
                    service_fn(move |request| forward(request, client.clone(), upstream, authorization.clone()));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Forwarder { addr, task }
}
