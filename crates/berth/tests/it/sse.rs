//! The messages of an MCP answer as a client reads them: a JSON body, or an SSE stream parsed
//! event by event as it arrives (ids, `retry`, priming events without data).

use std::{collections::VecDeque, time::Duration};

use futures::StreamExt;
use reqwest::{Response, StatusCode};
use serde_json::Value;

/// The messages of one SSE or JSON answer, readable as they arrive.
pub(crate) struct Messages {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    ready: VecDeque<(Option<String>, Value)>,
    /// The HTTP status of the answer.
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

    /// Reads up to the first message whose method is `method`, and answers it; `None` if the
    /// stream ended first.
    pub(crate) async fn find_method(&mut self, method: &str) -> Option<Value> {
        while let Some(message) = self.next().await {
            if message["method"] == method {
                return Some(message);
            }
        }
        None
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
