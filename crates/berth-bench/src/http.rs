//! A minimal Streamable-HTTP client on bare hyper: one HTTP/1.1 keep-alive connection per
//! request in flight, Basic auth, `Mcp-Session-Id`, and answers as JSON or SSE.
//!
//! Sessions are independent of connections: any connection may carry any session's request,
//! so thousands of sessions are multiplexed over a small pool of connections.

use std::{net::SocketAddr, pin::Pin};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// The protocol version the bench speaks (the last session-based one).
pub(crate) const PROTOCOL_VERSION: &str = "2025-11-25";

/// Where and as whom to send requests.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The server's address.
    pub(crate) addr: SocketAddr,
    /// The MCP path, e.g. `/conformance/mcp`.
    pub(crate) path: String,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
}

impl Endpoint {
    /// `http://addr{path}`, with Basic credentials when `credentials` is set.
    pub(crate) fn new(addr: SocketAddr, path: &str, credentials: Option<(&str, &str)>) -> Self {
        use base64::Engine as _;
        let authorization = credentials.map(|(user, password)| {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            HeaderValue::from_str(&format!("Basic {token}")).expect("base64 is a valid header value")
        });
        let host = HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header value");
        Self { addr, path: path.to_string(), host, authorization }
    }
}

/// One keep-alive HTTP/1.1 connection. Its I/O is driven by the task that sends on it (hyper's
/// connection future is polled alongside each request) rather than by a task of its own: no
/// hand-offs between a worker and a connection task for each request and answer, so the load
/// generator takes less of the CPU it shares with the servers it measures. A connection whose
/// exchange failed is not used again (the loops open a new one).
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    connection: Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
}

/// What came back for one POST.
pub(crate) struct Answer {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// The `Mcp-Session-Id` header, if any.
    pub(crate) session: Option<HeaderValue>,
    /// The body: one JSON message, or the raw SSE stream.
    body: Bytes,
    sse: bool,
}

impl Answer {
    /// The JSON-RPC messages of the answer.
    pub(crate) fn messages(&self) -> Vec<Value> {
        if !self.sse {
            return serde_json::from_slice(&self.body).map(|v| vec![v]).unwrap_or_default();
        }
        let text = String::from_utf8_lossy(&self.body);
        text.split("\n\n")
            .filter_map(|event| {
                let data: String = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
                (!data.is_empty()).then(|| serde_json::from_str(&data).ok()).flatten()
            })
            .collect()
    }

    /// Whether the answer holds a successful response to request `id`.
    pub(crate) fn is_result_for(&self, id: u64) -> bool {
        self.status == StatusCode::OK
            && self
                .messages()
                .iter()
                .any(|m| m.get("id").and_then(Value::as_u64) == Some(id) && m.get("result").is_some())
    }
}

impl Conn {
    /// Opens a connection with `TCP_NODELAY` (as any latency-minded client would).
    pub(crate) async fn open(endpoint: &Endpoint) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(endpoint.addr).await.with_context(|| format!("connect {}", endpoint.addr))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        Ok(Self { sender, connection: Box::pin(connection) })
    }

    /// Runs `exchange` (which sends on `self.sender`) while driving the connection's I/O.
    async fn drive<T>(
        connection: &mut Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
        exchange: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::pin!(exchange);
        tokio::select! {
            biased;
            done = &mut exchange => done,
            closed = connection.as_mut() => match closed {
                Ok(()) => bail!("the server closed the connection"),
                Err(error) => Err(error.into()),
            },
        }
    }

    /// GETs `path` without credentials (health and readiness) and answers the status.
    pub(crate) async fn get(&mut self, endpoint: &Endpoint, path: &str) -> anyhow::Result<StatusCode> {
        let request = Request::get(path).header(header::HOST, endpoint.host.clone()).body(Full::new(Bytes::new()))?;
        let sender = &mut self.sender;
        Self::drive(&mut self.connection, async move {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok(status)
        })
        .await
    }

    /// POSTs `body` (one JSON-RPC message) within `session`.
    pub(crate) async fn post(
        &mut self,
        endpoint: &Endpoint,
        session: Option<&HeaderValue>,
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        let mut request = Request::post(endpoint.path.as_str())
            .header(header::HOST, endpoint.host.clone())
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let headers = request.headers_mut();
        if let Some(authorization) = &endpoint.authorization {
            headers.insert(header::AUTHORIZATION, authorization.clone());
        }
        if let Some(session) = session {
            headers.insert("mcp-session-id", session.clone());
            headers.insert("mcp-protocol-version", HeaderValue::from_static(PROTOCOL_VERSION));
        }
        let sender = &mut self.sender;
        Self::drive(&mut self.connection, async move {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let session = response.headers().get("mcp-session-id").cloned();
            let sse = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let body = response.into_body().collect().await?.to_bytes();
            Ok(Answer { status, session, body, sse })
        })
        .await
    }

    /// Opens a session: `initialize`, then `notifications/initialized`; answers its id.
    pub(crate) async fn initialize(&mut self, endpoint: &Endpoint) -> anyhow::Result<HeaderValue> {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "berth-bench", "version": env!("CARGO_PKG_VERSION")}}});
        let answer = self.post(endpoint, None, Bytes::from(init.to_string())).await?;
        if !answer.is_result_for(0) {
            bail!(
                "initialize at {}{} answered {}: {:?}",
                endpoint.addr,
                endpoint.path,
                answer.status,
                answer.messages()
            );
        }
        let session = answer.session.context("initialize answered no Mcp-Session-Id")?;
        let initialized = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let answer = self.post(endpoint, Some(&session), initialized).await?;
        if answer.status != StatusCode::ACCEPTED {
            bail!("notifications/initialized answered {}", answer.status);
        }
        Ok(session)
    }
}
