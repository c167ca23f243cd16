//! `transport = "sse"`: the legacy HTTP+SSE transport (2024-11-05), spoken to the upstream as
//! if it were a stdio server's pipes.
//!
//! One connection is a `GET` of the URL, an SSE stream whose first event (`endpoint`) names
//! where to POST messages and whose `message` events carry the server's messages. That is a
//! message stream each way, exactly what a stdio server has, so an SSE connection is launched
//! as a stdio instance ([`Launched`]): what berth writes to its "stdin" is POSTed line by line
//! to the endpoint, its "stdout" is the data of the `message` events, one per line. The stdio
//! relay then does the rest, as for any stdio server: berth's own Streamable-HTTP sessions,
//! ids, progress, server requests, resumption, restarts when the stream ends.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::client::{self, UpstreamClient};
use crate::{
    config::HttpSpec,
    sse_event::event_end,
    stdio::{Launched, RunHandle},
};

/// What berth says it is.
const USER_AGENT: &str = concat!("berth/", env!("CARGO_PKG_VERSION"));

/// Messages read ahead of the relay, at most (the stream waits when the relay lags).
const AHEAD: usize = 64;

/// Connects to a legacy HTTP+SSE server.
pub(crate) struct LegacySse {
    backend: String,
    spec: Arc<HttpSpec>,
    client: UpstreamClient,
    /// Whether the last connection attempt succeeded and its stream has not ended since:
    /// what readiness says ([`LegacySse::is_up`]).
    up: Arc<AtomicBool>,
}

/// One connection: its two tasks, and how it ended.
pub(crate) struct SseRun {
    ended: watch::Receiver<Option<String>>,
    tasks: [JoinHandle<()>; 2],
}

impl SseRun {
    /// Completes when the connection ended; answers how.
    pub(crate) async fn exited(&mut self) -> String {
        match self.ended.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the connection ended".into(),
        }
    }

    /// Closes the connection (the upstream ends its session when its stream closes).
    pub(crate) fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

impl LegacySse {
    /// The connector of backend `name`; an error says why its TLS roots cannot be loaded.
    pub(crate) fn new(backend: &str, spec: Arc<HttpSpec>) -> Result<Self, String> {
        let tls = spec.url.scheme_str() == Some("https");
        let client = client::client(tls, spec.ca_file.as_deref(), spec.connect_timeout)?;
        Ok(Self { backend: backend.to_string(), spec, client, up: Arc::new(AtomicBool::new(true)) })
    }

    /// Whether the upstream is taken to be up: false from a failed connection attempt or the
    /// end of a stream until a connection succeeds again (instances retry with backoff; with
    /// no session open, the next client's initialize tries).
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Opens one connection, recording whether it could.
    pub(crate) async fn connect(&self) -> Result<Launched, String> {
        let outcome = self.open().await;
        self.up.store(outcome.is_ok(), Ordering::Relaxed);
        outcome
    }

    /// Opens one connection: the SSE stream, up to its `endpoint` event.
    async fn open(&self) -> Result<Launched, String> {
        let mut get = Request::new(Full::new(Bytes::new()));
        *get.uri_mut() = self.spec.url.clone();
        let headers = get.headers_mut();
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        for (name, value) in &self.spec.headers {
            headers.insert(name.clone(), value.clone());
        }
        let response = self.client.request(get).await.map_err(|error| format!("cannot connect: {error}"))?;
        let is_sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        if response.status() != StatusCode::OK || !is_sse {
            return Err(format!(
                "GET {} answered {} without an SSE stream: not an HTTP+SSE endpoint",
                self.spec.url,
                response.status()
            ));
        }
        let mut body = response.into_body().into_data_stream();
        let mut buffer: Vec<u8> = Vec::new();
        let endpoint = loop {
            if let Some((end, next)) = event_end(&buffer, 0) {
                let event: Vec<u8> = buffer.drain(..next).take(end).collect();
                let (name, data) = parse_event(&event);
                if name == "endpoint" {
                    break data;
                }
                continue;
            }
            match body.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                Some(Err(error)) => return Err(format!("the SSE stream broke before its endpoint event: {error}")),
                None => return Err("the SSE stream ended before its endpoint event".into()),
            }
        };
        let endpoint = resolve(&self.spec.url, endpoint.trim())?;

        let (ended_tx, ended) = watch::channel(None::<String>);
        let ended_tx = Arc::new(ended_tx);
        let (lines_tx, lines) = mpsc::channel::<io::Result<Bytes>>(AHEAD);
        let reader = {
            let ended = Arc::clone(&ended_tx);
            let up = Arc::clone(&self.up);
            tokio::spawn(async move {
                let reason = loop {
                    while let Some((end, next)) = event_end(&buffer, 0) {
                        let event: Vec<u8> = buffer.drain(..next).take(end).collect();
                        let (name, data) = parse_event(&event);
                        if name == "message" && !data.trim().is_empty() {
                            let mut line = data.into_bytes();
                            // A line per message: JSON has no raw line breaks outside strings.
                            line.retain(|byte| *byte != b'\n' && *byte != b'\r');
                            line.push(b'\n');
                            if lines_tx.send(Ok(Bytes::from(line))).await.is_err() {
                                return;
                            }
                        }
                    }
                    match body.next().await {
                        Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                        Some(Err(error)) => break format!("the SSE stream broke: {error}"),
                        None => break "the upstream closed its SSE stream".to_string(),
                    }
                };
                up.store(false, Ordering::Relaxed);
                ended.send_replace(Some(reason));
            })
        };
        let shown = endpoint.to_string();
        let (stdin, ours) = tokio::io::duplex(1 << 16);
        let poster = {
            let ended = Arc::clone(&ended_tx);
            let (client, headers) = (self.client.clone(), self.spec.headers.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(ours);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match lines.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let message = line.trim_ascii();
                    if message.is_empty() {
                        continue;
                    }
                    let mut request = Request::new(Full::new(Bytes::copy_from_slice(message)));
                    *request.method_mut() = Method::POST;
                    *request.uri_mut() = endpoint.clone();
                    request.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    request.headers_mut().insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
                    for (name, value) in &headers {
                        request.headers_mut().insert(name.clone(), value.clone());
                    }
                    let outcome = match client.request(request).await {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.into_body().collect().await;
                            continue;
                        }
                        Ok(response) => format!("the upstream refused a message with {}", response.status()),
                        Err(error) => format!("a message could not be posted: {error}"),
                    };
                    ended.send_replace(Some(outcome));
                    return;
                }
            })
        };
        tracing::debug!(backend = self.backend, endpoint = shown, "legacy SSE connection open");
        let stdout = futures::stream::unfold(lines, |mut lines| async move { Some((lines.recv().await?, lines)) });
        Ok(Launched {
            stdin: Box::pin(stdin),
            stdout: stdout.boxed(),
            stderr: futures::stream::empty().boxed(),
            handle: RunHandle::Sse(SseRun { ended, tasks: [reader, poster] }),
        })
    }
}

/// The `event` name (default `message`) and the joined `data` of one SSE event.
fn parse_event(event: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(event);
    let mut name = "message".to_string();
    let mut data = Vec::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            name = value.trim().to_string();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value).to_string());
        }
    }
    (name, data.join("\n"))
}

/// The endpoint the server named, resolved against the SSE URL. It must be on the same origin
/// (scheme, host, port): berth's upstream credentials go with every POST, and a server must
/// not be able to send them elsewhere.
fn resolve(base: &Uri, endpoint: &str) -> Result<Uri, String> {
    let origin =
        || format!("{}://{}", base.scheme_str().unwrap_or("http"), base.authority().map_or("", |a| a.as_str()));
    let absolute = if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_string()
    } else if endpoint.starts_with('/') {
        format!("{}{endpoint}", origin())
    } else {
        let path = base.path();
        let directory = &path[..path.rfind('/').map_or(0, |slash| slash + 1)];
        format!("{}{directory}{endpoint}", origin())
    };
    let uri: Uri = absolute.parse().map_err(|_| format!("the endpoint event `{endpoint}` is not a URL"))?;
    if uri.scheme() != base.scheme() || uri.authority() != base.authority() {
        return Err(format!("the endpoint event `{endpoint}` names another origin than {}: refused", origin()));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_on_the_same_origin_only() {
        let base: Uri = "http://127.0.0.1:3001/sse".parse().unwrap();
        let table = [
            ("/message?sessionId=a", Ok("http://127.0.0.1:3001/message?sessionId=a")),
            ("message?sessionId=a", Ok("http://127.0.0.1:3001/message?sessionId=a")),
            ("http://127.0.0.1:3001/m", Ok("http://127.0.0.1:3001/m")),
            ("http://evil.example/m", Err("another origin")),
            ("https://127.0.0.1:3001/m", Err("another origin")),
        ];
        for (endpoint, expected) in table {
            match (resolve(&base, endpoint), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got.to_string(), want, "{endpoint}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{endpoint}: {got}"),
                (got, want) => panic!("{endpoint}: {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn events_have_a_name_and_data() {
        assert_eq!(parse_event(b"event: endpoint\ndata: /m?s=1"), ("endpoint".into(), "/m?s=1".into()));
        assert_eq!(parse_event(b"data: {\"a\":1}"), ("message".into(), "{\"a\":1}".into()));
    }
}
