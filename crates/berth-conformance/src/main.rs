//! Serves [`ConformanceServer`] over stdio: newline-delimited JSON-RPC on stdin and
//! stdout, logs on stderr, and a clean exit when stdin closes.

use anyhow::Context as _;
use berth_conformance::ConformanceServer;
use rmcp::ServiceExt as _;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Stdout carries the protocol, so every log line must go to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let service = ConformanceServer::new()
        .serve(rmcp::transport::stdio())
        .await
        .context("failed to start the MCP session on stdio")?;
    // waiting() returns once the client closes stdin or the session ends.
    let reason = service.waiting().await.context("the MCP session task failed")?;
    tracing::info!(?reason, "stdio session ended");
    Ok(())
}
