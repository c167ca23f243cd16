//! Graceful shutdown: open SSE streams end, in-flight work drains, `serve` returns.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::{
    harness::{Berth, alice, config_with, http},
    mcp_client::post,
};

#[tokio::test]
async fn shutdown_ends_open_sse_streams_and_returns() {
    let berth = Berth::start(&config_with("[server]\nshutdown_grace = \"60s\"\n")).await;
    let url = berth.url("/conformance/mcp");
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let (_, headers, _) = post(&url, None, init).await;
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    post(&url, Some(&session), json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await;
    let stream = http()
        .get(&url)
        .header("authorization", alice())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
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
