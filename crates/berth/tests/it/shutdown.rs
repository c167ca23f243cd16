//! Graceful shutdown: open SSE streams end, in-flight work drains, `serve` returns.

use std::time::Duration;

use futures::StreamExt;

use crate::{
    harness::{Berth, config_with, http},
    requests::{McpHeaders, get_stream, open_session},
};

#[tokio::test]
async fn shutdown_ends_open_sse_streams_and_returns() {
    let berth = Berth::start(&config_with("[server]\nshutdown_grace = \"60s\"\n")).await;
    let url = berth.mcp_url("conformance");
    let session = open_session(&url).await;
    let stream = get_stream(&http(), &url).session(&session).protocol("2025-11-25").send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut body = stream.bytes_stream();
    let reader = tokio::spawn(async move {
        // Read until the server closes the stream.
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    });
    let stopped = tokio::time::timeout(Duration::from_secs(30), berth.stop()).await;
    assert!(stopped.is_ok(), "serve must return well within the grace period");
    tokio::time::timeout(Duration::from_secs(10), reader).await.expect("the SSE stream must end at shutdown").unwrap();
}
