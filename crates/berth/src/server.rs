//! The listener: accepts connections and serves the stack on them until shutdown.
//!
//! This is the only module that owns sockets. Every accepted socket gets `TCP_NODELAY` (small
//! SSE writes would otherwise wait ~40 ms for delayed ACKs), a header read timeout against slow
//! clients, and a permit from a semaphore that caps concurrent connections.

use std::{future::Future, sync::Arc, time::Duration};

use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{body::BodyError, extensions::ClientAddr, stack::HttpStack, tls::Tls};

/// Limits of the listener.
#[derive(Debug, Clone)]
pub(crate) struct ServeOptions {
    /// Most connections served at once.
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Time in-flight requests get to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// TLS termination, when `server.tls` is configured.
    pub tls: Option<Arc<Tls>>,
}

/// Serves `stack` on `listener` until `shutdown` completes, then drains.
///
/// At shutdown: stop accepting, cancel `streams` (which ends SSE streams and sessions), let
/// in-flight requests finish within the grace period, then close what is left.
pub(crate) async fn serve(
    listener: TcpListener,
    stack: HttpStack,
    options: ServeOptions,
    streams: CancellationToken,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let mut connections = JoinSet::new();
    let reloader = options.tls.clone().map(|tls| tokio::spawn(tls.watch(streams.child_token())));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Running out of file descriptors is transient: back off instead of
                    // spinning on the error.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next() => continue,
            () = &mut shutdown => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let stack = stack.clone();
        let service = tower::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(|body| body.map_err(BodyError::new).boxed_unsync());
            request.extensions_mut().insert(ClientAddr(peer));
            stack.clone().oneshot(request)
        });
        let service = TowerToHyperService::new(service);
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), options.tls.clone());
        connections.spawn(async move {
            // The TLS handshake happens here, in the connection's own task, so that a slow
            // client delays nobody else.
            let result = match tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                Some(tls) => match tls.handshake(stream).await {
                    Ok(stream) => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                    Err(error) => Err(error.into()),
                },
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    streams.cancel();
    tracing::info!(connections = graceful.count(), "shutting down: draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(options.shutdown_grace) => {
            tracing::warn!(remaining = connections.len(), "grace period over: closing remaining connections");
        }
    }
    connections.shutdown().await;
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
