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
    client: reqwest::Client,
}

/// The messages of one SSE or JSON answer, readable as they arrive.
pub(crate) struct Messages {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    ready: VecDeque<Value>,
    pub(crate) status: StatusCode,
}

impl Messages {
    /// Reads an answer: one JSON message, or an SSE stream read as it comes.
    pub(crate) async fn from(response: Response) -> Self {
        let status = response.status();
        let is_json = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("application/json"));
        let mut messages =
            Self { body: response.bytes_stream().boxed(), buffer: String::new(), ready: VecDeque::new(), status };
        if is_json {
            let mut bytes = Vec::new();
            while let Some(Ok(chunk)) = messages.body.next().await {
                bytes.extend_from_slice(&chunk);
            }
            if let Ok(value) = serde_json::from_slice(&bytes) {
                messages.ready.push_back(value);
            }
        }
        messages
    }

    /// The next message, or `None` when the stream ended; waits at most 30 s (a hang guard).
    pub(crate) async fn next(&mut self) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Some(message);
            }
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: String = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
                if !data.is_empty() {
                    self.ready.push_back(serde_json::from_str(&data).expect("SSE data is JSON"));
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

fn post(client: &reqwest::Client, url: &str, session: Option<&str>) -> reqwest::RequestBuilder {
    let mut request = client
        .post(url)
        .header("authorization", alice())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-11-25");
    }
    request
}

impl RawSession {
    /// Initializes a session with `capabilities`.
    pub(crate) async fn open(url: &str, capabilities: Value) -> Self {
        Self::try_open(url, capabilities).await.unwrap_or_else(|(status, body)| panic!("initialize: {status} {body}"))
    }

    /// Initializes a session, or answers the refusal.
    pub(crate) async fn try_open(url: &str, capabilities: Value) -> Result<Self, (StatusCode, Value)> {
        let client = http();
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": capabilities,
            "clientInfo": {"name": "raw", "version": "1"}}});
        let response = post(&client, url, None).body(init.to_string()).send().await.unwrap();
        let status = response.status();
        let id = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let Some(id) = id.filter(|_| status == StatusCode::OK) else { return Err((status, body)) };
        let session = Self { url: url.to_string(), id, init: body, client };
        session.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        Ok(session)
    }

    /// POSTs one message and answers the messages that come back.
    pub(crate) async fn send(&self, message: Value) -> Messages {
        let response = post(&self.client, &self.url, Some(&self.id)).body(message.to_string()).send().await.unwrap();
        Messages::from(response).await
    }

    /// Sends a request from a task of its own (for calls that stay in flight while the test
    /// does something else); the task answers the request's response.
    pub(crate) fn spawn_request(&self, message: Value) -> tokio::task::JoinHandle<Value> {
        let (client, url, id) = (self.client.clone(), self.url.clone(), self.id.clone());
        tokio::spawn(async move {
            let response = post(&client, &url, Some(&id)).body(message.to_string()).send().await.unwrap();
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

    /// Opens the GET stream of unsolicited messages.
    pub(crate) async fn listen(&self) -> Messages {
        let response = self
            .client
            .get(&self.url)
            .header("authorization", alice())
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", "2025-11-25")
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
