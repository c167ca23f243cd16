//! A stand-in for the gateway while it does not exist yet: serves
//! [`ConformanceServer`] over Streamable HTTP at `http://127.0.0.1:PORT/mcp` so that
//! the official suite can be pointed at it.
//!
//! Usage: `cargo run -p berth-conformance --example serve_http -- [PORT]` (default
//! 3000). It prints the URL once it listens and serves until interrupted.

use std::sync::Arc;

use anyhow::Context as _;
use berth_conformance::ConformanceServer;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port.parse().context("PORT must be a number")?,
        None => 3000,
    };
    let server = ConformanceServer::new();
    // One server, cloned per session and per stateless request, so that sealed
    // request state and listen streams are shared (see ConformanceServer's docs).
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot bind 127.0.0.1:{port}"))?;
    println!("http://{}/mcp", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            if let Err(error) = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}
