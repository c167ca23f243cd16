//! The service hyper calls on each connection: it hands requests to the stack, with the body
//! deadline on their bodies, and counts them in flight until their response bodies end.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::connection::{InFlight, Tracker};
use crate::{
    body::{BodyError, BodyTimeout},
    extensions::ClientAddr,
    stack::{LiveStack, OutBody},
};

/// The stack, as one connection's hyper service.
#[derive(Clone)]
pub(super) struct ConnectionService {
    stack: LiveStack,
    peer: SocketAddr,
    tracker: Tracker,
    body_read_timeout: Duration,
}

impl ConnectionService {
    /// Serves `stack` to `peer`, counting requests with `tracker`.
    pub(super) fn new(stack: LiveStack, peer: SocketAddr, tracker: Tracker, body_read_timeout: Duration) -> Self {
        Self { stack, peer, tracker, body_read_timeout }
    }
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<InFlightBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        // The head is complete: the request is in flight, and its body's deadline starts now.
        let in_flight = self.tracker.begin();
        let (timeout, deadline) = (self.body_read_timeout, Instant::now() + self.body_read_timeout);
        let mut request = request.map(|body| DeadlineBody::new(body, deadline, timeout).boxed_unsync());
        request.extensions_mut().insert(ClientAddr(self.peer));
        let response = self.stack.current().oneshot(request);
        // Should the connection go away first, this future is dropped and so is the guard.
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| InFlightBody { body, in_flight: Some(in_flight) }))
        })
    }
}

/// A request body that must arrive completely before a deadline.
///
/// Data already received is always handed on; only waiting past the deadline fails, with a
/// [`BodyTimeout`], so that a body trickling in one byte at a time cannot hold a request (and
/// the backend behind it) for ever. The timer is only created when the body makes its reader
/// wait: bodies that are complete at once, and bodies nobody reads, cost none.
pub(super) struct DeadlineBody<B = Incoming> {
    body: B,
    deadline: Instant,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
}

impl<B> DeadlineBody<B> {
    /// `body`, which must have ended by `deadline`, `timeout` after its head.
    pub(super) fn new(body: B, deadline: Instant, timeout: Duration) -> Self {
        Self { body, deadline, timeout, timer: None, timed_out: false }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(BodyError::new)));
        }
        let deadline = this.deadline;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        this.timed_out = true;
        Poll::Ready(Some(Err(BodyError::new(BodyTimeout(this.timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that keeps its request in flight until it ends or is dropped.
pub(super) struct InFlightBody<B = OutBody> {
    body: B,
    in_flight: Option<InFlight>,
}

impl<B> Body for InFlightBody<B>
where
    B: Body<Data = Bytes, Error = BodyError> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() {
            this.in_flight = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Runs one connection's HTTP/2 streams as tasks that the connection owns: hyper spawns each
/// stream's service future and response body, and when the connection's task ends, for whatever
/// reason, the token it holds is cancelled and its streams end with it.
#[derive(Debug, Clone)]
pub(super) struct StreamExecutor {
    streams: CancellationToken,
}

impl StreamExecutor {
    /// Streams run until `streams` is cancelled.
    pub(super) fn new(streams: CancellationToken) -> Self {
        Self { streams }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(self.streams.clone().run_until_cancelled_owned(future));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::{Full, StreamBody};

    use super::*;
    use crate::server::connection::{Phase, Registry};

    #[tokio::test]
    async fn a_body_is_handed_on_until_its_deadline_then_fails_with_a_timeout() {
        let timeout = Duration::from_millis(50);
        let on_time = DeadlineBody::new(Full::new(Bytes::from_static(b"{}")), Instant::now(), timeout);
        let bytes = on_time.collect().await.expect("data already there passes, even past the deadline");
        assert_eq!(bytes.to_bytes(), "{}");

        let stalled = futures::stream::pending::<Result<Frame<Bytes>, Infallible>>();
        let mut late = DeadlineBody::new(StreamBody::new(stalled), Instant::now() + timeout, timeout);
        let error = late.frame().await.expect("an error frame").expect_err("the body is late");
        assert!(error.is_timeout(), "{error}");
        assert!(late.is_end_stream() && late.frame().await.is_none(), "the body ends after its timeout");
    }

    #[tokio::test]
    async fn a_request_is_in_flight_until_its_response_body_ends_or_is_dropped() {
        let registry = Arc::new(Registry::default());
        let handle = registry.register("127.0.0.1:1".parse().unwrap());
        let phase = || handle.subscribe().borrow().phase();
        let response = |in_flight| InFlightBody {
            body: Full::new(Bytes::from_static(b"ok")).map_err(|never: Infallible| -> BodyError { match never {} }),
            in_flight: Some(in_flight),
        };

        let mut ended = response(handle.tracker().begin());
        assert_eq!(phase(), Phase::Active);
        while ended.frame().await.is_some() {}
        assert_eq!(phase(), Phase::Idle, "the body ended");

        let dropped = response(handle.tracker().begin());
        assert_eq!(phase(), Phase::Active);
        drop(dropped);
        assert_eq!(phase(), Phase::Idle, "the body was dropped before its end");
        drop(ended);
    }
}
