//! A small raw Streamable-HTTP client for tests that need to see every message on the wire
//! (ids, extra fields, server requests) rather than what an SDK makes of them.

use std::{collections::VecDeque, time::Duration};

use futures::StreamExt;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::harness::{alice, http};

/// A session opened with `initialize`.
pub(crate) struct RawSession {
    pub(crate) url: String,
    pub(crate) id: String,
    pub(crate) init: Value,
    /// The protocol version it sends in `MCP-Protocol-Version`.
    pub(crate) version: String,
    client: reqwest::Client,
}

/// The messages of one SSE or JSON answer, readable as they arrive.
pub(crate) struct Messages {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    ready: VecDeque<(Option<String>, Value)>,
    pub(crate) status: StatusCode,
    /// The SSE event id of the last message returned (or of a priming event seen before it):
    /// what a client sends as `Last-Event-ID` to resume.
    pub(crate) last_event_id: Option<String>,
    /// How many events carried the `retry` field.
    pub(crate) retries: usize,
}

impl Messages {
    /// The messages of a response, readable as they arrive.
    pub(crate) async fn from(response: Response) -> Self {
        let status = response.status();
        let is_json = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("application/json"));
        let mut messages = Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
            ready: VecDeque::new(),
            status,
            last_event_id: None,
            retries: 0,
        };
        if is_json {
            let mut bytes = Vec::new();
            while let Some(Ok(chunk)) = messages.body.next().await {
                bytes.extend_from_slice(&chunk);
            }
            if let Ok(value) = serde_json::from_slice(&bytes) {
                messages.ready.push_back((None, value));
            }
        }
        messages
    }

    /// The next message, or `None` when the stream ended; waits at most 30 s (a hang guard).
    pub(crate) async fn next(&mut self) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((id, message)) = self.ready.pop_front() {
                if id.is_some() {
                    self.last_event_id = id;
                }
                return Some(message);
            }
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| event.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string());
                let data: String = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
                let id = field("id:");
                self.retries += usize::from(field("retry:").is_some());
                if data.is_empty() {
                    if id.is_some() {
                        self.last_event_id = id;
                    }
                } else {
                    self.ready.push_back((id, serde_json::from_str(&data).expect("SSE data is JSON")));
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.expect("no message within 30 s")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk.ok()?));
        }
    }

    /// Every remaining message.
    pub(crate) async fn all(mut self) -> Vec<Value> {
        let mut all = Vec::new();
        while let Some(message) = self.next().await {
            all.push(message);
        }
        all
    }

    /// The first message that is a response (has `result` or `error`).
    pub(crate) async fn response(mut self) -> Value {
        while let Some(message) = self.next().await {
            if message.get("method").is_none() {
                return message;
            }
        }
        panic!("the stream ended without a response")
    }
}

/// A POST to an MCP endpoint as Alice; with a session, its id and protocol version (no
/// `MCP-Protocol-Version` header when the version is empty).
pub(crate) fn post(client: &reqwest::Client, url: &str, session: Option<(&str, &str)>) -> reqwest::RequestBuilder {
    let mut request = client
        .post(url)
        .header("authorization", alice())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json");
    if let Some((session, version)) = session {
        request = request.header("mcp-session-id", session);
        if !version.is_empty() {
            request = request.header("mcp-protocol-version", version);
        }
    }
    request
}

/// POSTs a raw body and answers the status and the messages that came back (a hang guard of
/// 30 s: berth must answer, not leave the client waiting).
pub(crate) async fn post_raw(url: &str, session: Option<(&str, &str)>, body: &str) -> (StatusCode, Vec<Value>) {
    let response =
        tokio::time::timeout(Duration::from_secs(30), post(&http(), url, session).body(body.to_string()).send())
            .await
            .expect("an answer within 30 s")
            .unwrap();
    let messages = Messages::from(response).await;
    let status = messages.status;
    (status, messages.all().await)
}

impl RawSession {
    /// Initializes a session with `capabilities`.
    pub(crate) async fn open(url: &str, capabilities: Value) -> Self {
        Self::try_open(url, capabilities).await.unwrap_or_else(|(status, body)| panic!("initialize: {status} {body}"))
    }

    /// Initializes a session of protocol `version`.
    pub(crate) async fn open_version(url: &str, version: &str) -> Self {
        Self::try_open_version(url, json!({}), version)
            .await
            .unwrap_or_else(|(status, body)| panic!("initialize: {status} {body}"))
    }

    /// Initializes a session, or answers the refusal.
    pub(crate) async fn try_open(url: &str, capabilities: Value) -> Result<Self, (StatusCode, Value)> {
        Self::try_open_version(url, capabilities, "2025-11-25").await
    }

    async fn try_open_version(url: &str, capabilities: Value, version: &str) -> Result<Self, (StatusCode, Value)> {
        let client = http();
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": capabilities,
            "clientInfo": {"name": "raw", "version": "1"}}});
        let response = post(&client, url, None).body(init.to_string()).send().await.unwrap();
        let status = response.status();
        let id = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let Some(id) = id.filter(|_| status == StatusCode::OK) else { return Err((status, body)) };
        let version = body["result"]["protocolVersion"].as_str().unwrap_or(version).to_string();
        let session = Self { url: url.to_string(), id, init: body, version, client };
        session.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        Ok(session)
    }

    /// POSTs one message and answers the messages that come back.
    pub(crate) async fn send(&self, message: Value) -> Messages {
        self.send_raw(&message.to_string()).await
    }

    /// POSTs a raw body in this session.
    pub(crate) async fn send_raw(&self, body: &str) -> Messages {
        let response =
            post(&self.client, &self.url, Some((&self.id, &self.version))).body(body.to_string()).send().await.unwrap();
        Messages::from(response).await
    }

    /// The session id and protocol version, for [`post_raw`].
    pub(crate) fn headers(&self) -> (&str, &str) {
        (&self.id, &self.version)
    }

    /// Sends a request from a task of its own (for calls that stay in flight while the test
    /// does something else); the task answers the request's response.
    pub(crate) fn spawn_request(&self, message: Value) -> tokio::task::JoinHandle<Value> {
        let (client, url, id, version) = (self.client.clone(), self.url.clone(), self.id.clone(), self.version.clone());
        tokio::spawn(async move {
            let response = post(&client, &url, Some((&id, &version))).body(message.to_string()).send().await.unwrap();
            Messages::from(response).await.response().await
        })
    }

    /// Sends a request and answers its response.
    pub(crate) async fn request(&self, id: Value, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await.response().await
    }

    /// Calls a tool and answers its text (or the error object as text).
    pub(crate) async fn tool(&self, name: &str, arguments: Value) -> String {
        let response = self
            .request(json!(format!("call-{name}")), "tools/call", json!({"name": name, "arguments": arguments}))
            .await;
        match response.pointer("/result/content/0/text") {
            Some(text) => text.as_str().unwrap().to_string(),
            None => response.to_string(),
        }
    }

    /// Resumes a stream with `Last-Event-ID` (a GET, as the spec says).
    pub(crate) async fn resume(&self, last_event_id: &str) -> Messages {
        let response = self
            .client
            .get(&self.url)
            .header("authorization", alice())
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", &self.version)
            .header("last-event-id", last_event_id)
            .send()
            .await
            .unwrap();
        Messages::from(response).await
    }

    /// Opens the GET stream of unsolicited messages.
    pub(crate) async fn listen(&self) -> Messages {
        let response = self
            .client
            .get(&self.url)
            .header("authorization", alice())
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", &self.version)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Messages::from(response).await
    }

    /// Ends the session.
    pub(crate) async fn delete(&self) -> StatusCode {
        self.client
            .delete(&self.url)
            .header("authorization", alice())
            .header("mcp-session-id", &self.id)
            .send()
            .await
            .unwrap()
            .status()
    }
}

/// A GET with `Last-Event-ID` in `session` that is expected to be refused: its status and body.
pub(crate) async fn get_raw(session: &RawSession, last_event_id: &str) -> (StatusCode, Value) {
    let response = http()
        .get(&session.url)
        .header("authorization", alice())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session.id)
        .header("mcp-protocol-version", &session.version)
        .header("last-event-id", last_event_id)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Opens and ends 200 sessions at `url`, ten at once per round: each calls the fixture's `echo`
/// and is deleted. The leak tests count what is left behind afterwards.
pub(crate) async fn churn_sessions(url: &str) {
    for round in 0..20 {
        let sessions: Vec<RawSession> =
            futures::future::join_all((0..10).map(|_| RawSession::open(url, json!({})))).await;
        for session in &sessions {
            assert_eq!(session.tool("echo", json!({"text": "x"})).await, "x", "{url} round {round}");
            assert_eq!(session.delete().await, StatusCode::OK);
        }
    }
}
