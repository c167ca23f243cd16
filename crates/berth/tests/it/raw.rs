//! A small raw Streamable-HTTP client for tests that need to see every message on the wire
//! (ids, extra fields, server requests) rather than what an SDK makes of them.

use std::time::Duration;

use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::{
    harness::http,
    requests::{self, McpHeaders, initialize_with, initialized},
    sse::Messages,
};

/// A session opened with `initialize`.
pub(crate) struct RawSession {
    pub(crate) url: String,
    pub(crate) id: String,
    pub(crate) init: Value,
    /// The protocol version it sends in `MCP-Protocol-Version`.
    pub(crate) version: String,
    client: reqwest::Client,
}

/// A POST to an MCP endpoint as Alice; with a session, its id and protocol version (no
/// `MCP-Protocol-Version` header when the version is empty).
fn post(client: &Client, url: &str, session: Option<(&str, &str)>) -> RequestBuilder {
    let mut request = requests::post(client, url);
    if let Some((session, version)) = session {
        request = request.session(session);
        if !version.is_empty() {
            request = request.protocol(version);
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
        let init = initialize_with(0, version, capabilities);
        let response = post(&client, url, None).body(init.to_string()).send().await.unwrap();
        let status = response.status();
        let id = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let Some(id) = id.filter(|_| status == StatusCode::OK) else { return Err((status, body)) };
        let version = body["result"]["protocolVersion"].as_str().unwrap_or(version).to_string();
        let session = Self { url: url.to_string(), id, init: body, version, client };
        session.send(initialized()).await;
        Ok(session)
    }

    /// POSTs one message and answers the messages that come back.
    pub(crate) async fn send(&self, message: Value) -> Messages {
        self.send_raw(&message.to_string()).await
    }

    /// POSTs a raw body in this session.
    pub(crate) async fn send_raw(&self, body: &str) -> Messages {
        let response = self.post(&self.client).body(body.to_string()).send().await.unwrap();
        Messages::from(response).await
    }

    /// A POST in this session from `client`, for tests that read the answer themselves.
    pub(crate) fn post(&self, client: &Client) -> RequestBuilder {
        post(client, &self.url, Some(self.headers()))
    }

    /// A GET of this session's stream from `client`.
    fn get(&self, client: &Client) -> RequestBuilder {
        requests::get_stream(client, &self.url).session(&self.id).protocol(&self.version)
    }

    /// The session id and protocol version, for [`post_raw`].
    pub(crate) fn headers(&self) -> (&str, &str) {
        (&self.id, &self.version)
    }

    /// Sends a request from a task of its own (for calls that stay in flight while the test
    /// does something else); the task answers the request's response.
    pub(crate) fn spawn_request(&self, message: Value) -> tokio::task::JoinHandle<Value> {
        let request = self.post(&self.client).body(message.to_string());
        tokio::spawn(async move { Messages::from(request.send().await.unwrap()).await.response().await })
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
        let response = self.get(&self.client).last_event_id(last_event_id).send().await.unwrap();
        Messages::from(response).await
    }

    /// Opens the GET stream of unsolicited messages.
    pub(crate) async fn listen(&self) -> Messages {
        let response = self.get(&self.client).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Messages::from(response).await
    }

    /// Ends the session.
    pub(crate) async fn delete(&self) -> StatusCode {
        requests::delete(&self.client, &self.url, &self.id).send().await.unwrap().status()
    }
}

/// A GET with `Last-Event-ID` in `session` that is expected to be refused: its status and body.
pub(crate) async fn get_raw(session: &RawSession, last_event_id: &str) -> (StatusCode, Value) {
    let response = session.get(&http()).last_event_id(last_event_id).send().await.unwrap();
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
