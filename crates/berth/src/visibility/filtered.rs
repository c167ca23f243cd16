//! The answer body of a list request, with the hidden items taken out on the way.
//!
//! A JSON answer is buffered whole (within [`BUDGET`]) and rewritten; an SSE answer event by
//! event, so that progress and other events pass at once and unchanged. Only the responses to
//! the list requests of this POST are rewritten; every other message keeps its bytes. An answer
//! too large to filter becomes a JSON-RPC error rather than reach the client unfiltered.

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use serde_json::Value;

use super::{Item, Seen};
use crate::sse_event::{event_end, event_message};
use crate::{
    body::ResponseBody,
    jsonrpc::{self, INTERNAL_ERROR},
};

/// The most bytes buffered for one JSON answer or one SSE event.
const BUDGET: usize = 16 * 1024 * 1024;

/// A list request of the POST: its id, and what its answer lists.
pub(super) type ListRequest = (Value, (Item, &'static str, &'static str));

/// The filtering body.
pub(super) struct Filtered {
    inner: ResponseBody,
    sse: bool,
    lists: Vec<ListRequest>,
    seen: Seen,
    buffer: BytesMut,
    /// How far `buffer` has been searched for the end of an event, so that an event arriving
    /// in many pieces is scanned once, not once per piece.
    searched: usize,
    out: VecDeque<Bytes>,
    ended: bool,
}

impl Filtered {
    /// Filters `inner`, an SSE stream when `sse`, for the list requests `lists`, as `seen`.
    pub(super) fn new(inner: ResponseBody, sse: bool, lists: Vec<ListRequest>, seen: Seen) -> Self {
        Self { inner, sse, lists, seen, buffer: BytesMut::new(), searched: 0, out: VecDeque::new(), ended: false }
    }

    /// Removes the hidden items from `message` if it answers one of the list requests; answers
    /// whether it changed anything.
    fn filter_message(&self, message: &mut Value) -> bool {
        let Some((_, (item, field, key))) = self.lists.iter().find(|(id, _)| message.get("id") == Some(id)) else {
            return false;
        };
        let Some(entries) = message.get_mut("result").and_then(|r| r.get_mut(*field)).and_then(Value::as_array_mut)
        else {
            return false;
        };
        let before = entries.len();
        entries
            .retain(|entry| entry.get(*key).and_then(Value::as_str).is_some_and(|name| self.seen.shows(*item, name)));
        entries.len() != before
    }

    /// A whole JSON body (one message or a batch), filtered.
    fn filter_json(&self, body: &[u8]) -> Bytes {
        let Ok(mut value) = serde_json::from_slice::<Value>(body) else { return Bytes::copy_from_slice(body) };
        let changed = match &mut value {
            Value::Array(messages) => messages.iter_mut().fold(false, |changed, m| self.filter_message(m) | changed),
            message => self.filter_message(message),
        };
        if changed { Bytes::from(value.to_string()) } else { Bytes::copy_from_slice(body) }
    }

    /// One SSE event (without its closing blank line), filtered; `None` keeps it as it is.
    fn filter_event(&self, event: &[u8]) -> Option<Bytes> {
        let text = std::str::from_utf8(event).ok()?;
        let mut message = event_message(event)?;
        if !self.filter_message(&mut message) {
            return None;
        }
        let mut rewritten = String::new();
        for line in text.lines().filter(|line| !line.starts_with("data:")) {
            rewritten.push_str(line);
            rewritten.push('\n');
        }
        rewritten.push_str(&format!("data: {message}\n\n"));
        Some(Bytes::from(rewritten))
    }

    /// The answer when a JSON body or an SSE event is beyond [`BUDGET`].
    fn too_large(&self) -> Bytes {
        let id = self.lists.first().map_or_else(|| "null".to_string(), |(id, _)| id.to_string());
        let error = jsonrpc::error(id.as_bytes(), INTERNAL_ERROR, "the list is too large for berth to filter");
        if self.sse { Bytes::from(format!("data: {}\n\n", String::from_utf8_lossy(&error))) } else { error }
    }

    /// Takes a piece of the body, queueing whatever is ready to go out.
    fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        if !self.sse {
            if self.buffer.len() > BUDGET {
                self.out.push_back(self.too_large());
                self.ended = true;
            }
            return;
        }
        // A separator may straddle two pieces: search again from its possible start.
        while let Some((text_end, next)) = event_end(&self.buffer, self.searched.saturating_sub(3)) {
            self.searched = 0;
            let event = self.buffer.split_to(next).freeze();
            let out = self.filter_event(&event[..text_end]).unwrap_or(event);
            self.out.push_back(out);
        }
        self.searched = self.buffer.len();
        if self.buffer.len() > BUDGET {
            self.buffer.clear();
            self.searched = 0;
            self.out.push_back(self.too_large());
        }
    }

    /// The body ended: what is left goes out.
    fn finish(&mut self) {
        let rest = std::mem::take(&mut self.buffer);
        if !rest.is_empty() {
            let out = if self.sse {
                self.filter_event(&rest).unwrap_or_else(|| rest.freeze())
            } else {
                self.filter_json(&rest)
            };
            self.out.push_back(out);
        }
        self.ended = true;
    }
}

impl Body for Filtered {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if let Some(out) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.finish(),
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers: none of berth's answers has any; nothing to filter in them.
                    if let Ok(data) = frame.into_data() {
                        this.push(&data);
                    }
                }
                Poll::Ready(Some(Err(never))) => match never {},
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.out.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::visibility::{Patterns, View};
    use http_body_util::BodyExt;
    use serde_json::json;

    fn seen() -> Seen {
        let tools = Patterns::new(None, &["echo".to_string()]).unwrap();
        Seen { views: vec![View { tools, ..View::default() }] }
    }

    async fn run(sse: bool, pieces: Vec<&'static str>) -> String {
        let stream =
            futures::stream::iter(pieces.into_iter().map(|p| Ok::<_, Infallible>(Frame::data(Bytes::from(p)))));
        let inner = http_body_util::StreamBody::new(stream).boxed();
        let lists = vec![(json!(1), (Item::Tool, "tools", "name"))];
        let body = Filtered::new(inner, sse, lists, seen()).collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn json_and_sse_answers_lose_their_hidden_items_and_nothing_else() {
        let list = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},{"name":"add"}],"nextCursor":"2"}}"#;
        let json_out: Value = serde_json::from_str(&run(false, vec![&list[..20], &list[20..]]).await).unwrap();
        assert_eq!(json_out["result"]["tools"], json!([{"name": "add"}]));
        assert_eq!(json_out["result"]["nextCursor"], "2", "pagination is kept");

        let progress = "id: 0/0\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
        let answer = format!("id: 0/1\ndata: {list}\n\n");
        let leaked: &'static str = Box::leak(format!("{progress}{answer}").into_boxed_str());
        let out = run(true, vec![&leaked[..30], &leaked[30..70], &leaked[70..]]).await;
        assert!(out.starts_with(progress), "other events pass unchanged: {out}");
        assert!(out.contains("id: 0/1\ndata: ") && !out.contains("echo") && out.contains("\"add\""), "{out}");
        // Wherever the pieces are cut, separators included, the answer is the same.
        for cut in 1..leaked.len() {
            assert_eq!(run(true, vec![&leaked[..cut], &leaked[cut..]]).await, out, "cut at {cut}");
        }
    }
}
