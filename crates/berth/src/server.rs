//! The listener: accepts connections and serves the stack on them until shutdown.
//!
//! This is the only module that owns sockets. Every accepted socket gets `TCP_NODELAY` (small
//! SSE writes would otherwise wait ~40 ms for delayed ACKs) and a slot in a connection table
//! capped at `max_connections`. Every phase of a connection has a deadline, so that a client
//! that connects and then says nothing, or too little, cannot keep its slot:
//!
//! - the first request head must arrive within `header_read_timeout` of accept (after the TLS
//!   handshake, which has its own timeout), whatever the protocol: hyper's own HTTP/1 header
//!   timeout only starts once protocol detection has read something, and HTTP/2 has none;
//! - a request body must arrive completely within `body_read_timeout` of its head (408);
//! - a connection with no request in flight is closed gracefully after
//!   `connection_idle_timeout` (hyper also applies its HTTP/1 header timeout between requests);
//! - HTTP/2 connections are pinged every `http2_keep_alive_interval`, so that a dead peer under
//!   an SSE stream, which is in flight and has no other deadline, is noticed.
//!
//! When every slot is taken, the newcomer is not left in the backlog behind connections that do
//! nothing: the one idle longest is closed to make room (never-spoken connections first, then
//! keep-alive ones). Only when every connection has a request in flight does the newcomer wait.

mod connection;
mod service;

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use hyper::rt::{Read, Write};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use self::{
    connection::{Closing, Deadlines, Handle, Phase, Registry},
    service::{ConnectionService, StreamExecutor},
};
use crate::{stack::LiveStack, tls::Tls};

/// Limits of the listener.
#[derive(Debug, Clone)]
pub(crate) struct ServeOptions {
    /// Most connections served at once.
    pub max_connections: usize,
    /// Time a client has to send a request head: the first one from accept (after the TLS
    /// handshake), and on HTTP/1 each next one from the end of the previous response.
    pub header_read_timeout: Duration,
    /// Time a request body has to arrive completely once its head is read.
    pub body_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub connection_idle_timeout: Duration,
    /// Interval of HTTP/2 keep-alive pings, and the time a peer has to answer one.
    pub http2_keep_alive_interval: Duration,
    /// Time in-flight requests get to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// TLS termination, when `server.tls` is configured.
    pub tls: Option<Arc<Tls>>,
}

impl ServeOptions {
    fn deadlines(&self) -> Deadlines {
        Deadlines { first_request: self.header_read_timeout, idle: self.connection_idle_timeout }
    }

    /// The protocol settings of one connection, whose HTTP/2 streams run on `executor`.
    fn builder(&self, executor: StreamExecutor) -> auto::Builder<StreamExecutor> {
        let mut builder = auto::Builder::new(executor);
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.http2_keep_alive_interval)
            .keep_alive_timeout(self.http2_keep_alive_interval);
        builder
    }
}

/// Serves `stack` on `listener` until `shutdown` completes, then drains.
///
/// At shutdown: stop accepting, cancel `streams` (which ends SSE streams and sessions), close
/// every connection gracefully, let in-flight requests finish within the grace period, then
/// close what is left.
pub(crate) async fn serve(
    listener: TcpListener,
    stack: impl Into<LiveStack>,
    options: ServeOptions,
    streams: CancellationToken,
    shutdown: impl Future<Output = ()>,
) {
    let stack = stack.into();
    let options = Arc::new(options);
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let registry = Arc::new(Registry::default());
    let drain = CancellationToken::new();
    let mut connections = JoinSet::new();
    let reloader = options.tls.clone().map(|tls| tokio::spawn(tls.watch(streams.child_token())));
    tokio::pin!(shutdown);
    loop {
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
        let Some(permit) = slot(&permits, &registry, &mut connections, shutdown.as_mut()).await else {
            break;
        };
        let handle = registry.register(peer);
        let service = ConnectionService::new(stack.clone(), peer, handle.tracker(), options.body_read_timeout);
        connections.spawn(connection(stream, peer, service, handle, Arc::clone(&options), drain.clone(), permit));
    }
    drop(listener);
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    streams.cancel();
    drain.cancel();
    tracing::info!(connections = connections.len(), "shutting down: draining connections");
    let drained =
        tokio::time::timeout(options.shutdown_grace, async { while connections.join_next().await.is_some() {} });
    match drained.await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => {
            tracing::warn!(remaining = connections.len(), "grace period over: closing remaining connections");
        }
    }
    connections.shutdown().await;
}

/// A connection slot for a newcomer that was just accepted, or `None` if shutdown begins first.
///
/// The newcomer is held (one socket beyond the cap, never more: nothing else is accepted
/// meanwhile) while the table makes room: a connection with nothing in flight is closed, and
/// its slot comes back when its task ends. When every connection has a request in flight, the
/// newcomer waits until one ends or goes idle.
async fn slot<F: Future<Output = ()>>(
    permits: &Arc<Semaphore>,
    registry: &Registry,
    connections: &mut JoinSet<()>,
    mut shutdown: Pin<&mut F>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = Arc::clone(permits).try_acquire_owned() {
        return Some(permit);
    }
    let mut told = false;
    loop {
        if !registry.make_room() && !told {
            tracing::debug!("every connection has a request in flight: the newcomer waits for a free slot");
            told = true;
        }
        tokio::select! {
            permit = Arc::clone(permits).acquire_owned() => return Some(permit.expect("the semaphore is never closed")),
            () = registry.changed() => {}
            Some(_) = connections.join_next() => {}
            () = &mut shutdown => return None,
        }
    }
}

/// One connection's task: the TLS handshake, then HTTP until the connection ends, is closed by
/// a deadline or an eviction, or shutdown closes it. Holds the connection's slot until it ends.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    service: ConnectionService,
    handle: Handle,
    options: Arc<ServeOptions>,
    drain: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    // The connection's HTTP/2 streams are tasks of their own (hyper spawns them); they end
    // when this task does, whether it returns or is aborted.
    let streams = CancellationToken::new();
    let _streams = streams.clone().drop_guard();
    let builder = options.builder(StreamExecutor::new(streams));
    let deadlines = options.deadlines();
    let result = match &options.tls {
        None => drive(TokioIo::new(stream), &builder, service, &handle, deadlines, &drain, peer).await,
        Some(tls) => {
            // The handshake happens here, in the connection's own task, so that a slow client
            // delays nobody else; an eviction or shutdown interrupts it.
            let mut states = handle.subscribe();
            let handshake = tokio::select! {
                handshake = tls.handshake(stream) => handshake,
                _ = states.wait_for(|state| state.closing().is_some()) => return,
                () = drain.cancelled() => return,
            };
            match handshake {
                Ok(stream) => {
                    handle.handshake_done();
                    drive(TokioIo::new(stream), &builder, service, &handle, deadlines, &drain, peer).await
                }
                Err(error) => Err(error.into()),
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Serves HTTP on `io` until the connection ends, acting on its deadlines and close requests.
async fn drive<I>(
    io: I,
    builder: &auto::Builder<StreamExecutor>,
    service: ConnectionService,
    handle: &Handle,
    deadlines: Deadlines,
    drain: &CancellationToken,
    peer: SocketAddr,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: Read + Write + Unpin + Send + 'static,
{
    let mut states = handle.subscribe();
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut said_goodbye = false;
    loop {
        let state = *states.borrow_and_update();
        match state.closing() {
            Some(Closing::Abort) => return Ok(()),
            // During protocol detection this ends the connection at once; on HTTP/1 it closes
            // after the response in progress, if any; on HTTP/2 it sends GOAWAY.
            Some(Closing::Graceful) if !said_goodbye => {
                connection.as_mut().graceful_shutdown();
                said_goodbye = true;
            }
            _ => {}
        }
        let deadline = state.deadline(deadlines);
        if let Some(deadline) = deadline {
            timer.as_mut().reset(deadline);
        }
        tokio::select! {
            result = connection.as_mut() => return result,
            _ = states.changed() => {}
            () = timer.as_mut(), if deadline.is_some() => {
                // The deadline passed, unless the state moved on meanwhile: `expire` checks
                // again. The timer never fires early, but were the clock to disagree, taking the
                // later of the two keeps a due deadline from re-arming in a loop.
                let now = deadline.map_or_else(Instant::now, |due| Instant::now().max(due));
                match handle.expire(now, deadlines) {
                    Some((Phase::Fresh, None)) => {
                        tracing::debug!(%peer, "no request head within server.header_read_timeout: closing");
                    }
                    Some((_, None)) => tracing::debug!(%peer, "idle past server.connection_idle_timeout: closing"),
                    Some((_, Some(_))) => tracing::debug!(%peer, "the peer did not let the connection close: dropping it"),
                    None => {}
                }
            }
            () = drain.cancelled(), if !said_goodbye => handle.close(Closing::Graceful),
        }
    }
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this
/// is called, not when the future is first polled, so that a signal arriving between the call
/// and the first poll (right after "berth listening on" is logged, say) is not the default
/// action that kills the process. Call it inside a tokio runtime.
pub fn signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let (terminate, interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |stream: Option<tokio::signal::unix::Signal>| async move {
                match stream {
                    Some(mut stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => tracing::info!("SIGINT received"),
                () = wait(terminate) => tracing::info!("SIGTERM received"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C received");
        }
    }
}
