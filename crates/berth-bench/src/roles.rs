//! The processes the bench starts are this same binary in another role, chosen by the
//! `BERTH_BENCH_ROLE` variable, so that one `cargo build -p berth-bench` builds everything a run
//! needs and every side runs as a process of its own (its RSS measurable, its CPU its own):
//!
//! - `berth`: exactly the `berth` binary (`berth::cli::run` over the built-in services).
//! - `conformance-stdio`: exactly the `berth-conformance` binary (the reference server on stdio).
//! - `bare-rmcp`: the baseline of the native path, rmcp's `StreamableHttpService` of the same
//!   `ConformanceServer` with none of berth's layers; prints its address on stdout.
//!
//! berth removes `BERTH_*` variables from its servers' environment, so the role of a berth
//! child never leaks into the stdio servers it starts.

use std::{process::ExitCode, sync::Arc};

use berth_conformance::ConformanceServer;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use rmcp::{
    ServiceExt as _,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};

/// The variable naming the role.
pub(crate) const ROLE: &str = "BERTH_BENCH_ROLE";

/// Runs the role named by [`ROLE`], if any.
pub(crate) fn run_role() -> Option<ExitCode> {
    let role = std::env::var(ROLE).ok()?;
    Some(match role.as_str() {
        "berth" => berth::cli::run(berth::NativeRegistry::builtin()),
        "conformance-stdio" => runtime(conformance_stdio()),
        "bare-rmcp" => runtime(bare_rmcp()),
        other => {
            eprintln!("berth-bench: unknown {ROLE} `{other}`");
            ExitCode::from(64)
        }
    })
}

fn runtime(future: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("berth-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `berth-conformance` binary's main.
async fn conformance_stdio() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let service = ConformanceServer::new().serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}

/// rmcp's Streamable-HTTP service of `ConformanceServer`, nothing else: the transport
/// settings berth gives its native services (no host check, which berth does itself), no
/// authentication, no tracing, `TCP_NODELAY` as berth sets it.
async fn bare_rmcp() -> anyhow::Result<()> {
    let server = ConformanceServer::new();
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts().disable_allowed_origins();
    let service =
        StreamableHttpService::new(move || Ok(server.clone()), Arc::new(LocalSessionManager::default()), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
