//! Call rate limits: `backends.<name>.rate_limit = { calls = 600, per = "1m" }`, per identity.
//!
//! Each identity (the authenticated user; with `auth = "none"`, the client address) has a token
//! bucket per backend (governor's GCRA): `burst` calls at once (by default `calls`), then
//! `calls` per `per`. A call is a JSON-RPC request of a `POST`, each request of a batch one;
//! notifications, responses, `GET` streams and `DELETE`s are never limited, so sessions and
//! streams stay open while their user waits. Beyond the limit berth answers `429` with
//! `Retry-After` and a JSON-RPC error carrying the first request's id.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use crate::{
    body::ResponseBody,
    extensions::{AuthenticatedUser, ClientAddr, ParsedBody, Target},
    jsonrpc::Kind,
    reply::Rejection,
};

/// Buckets kept before the full ones are dropped (only anonymous clients, one per address, can
/// grow the map beyond the number of users).
const SWEEP_AT: usize = 10_000;

/// A validated `rate_limit`: one call earned back each `interval`, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallRate {
    /// The time one call takes to be earned back (`per / calls`).
    pub(crate) interval: Duration,
    /// Calls allowed at once.
    pub(crate) burst: NonZeroU32,
}

/// The buckets of one backend, by identity.
#[derive(Debug)]
pub(crate) struct CallLimiter {
    limiter: DefaultKeyedRateLimiter<Arc<str>>,
    /// When full buckets were last dropped, so that a full map costs one sweep a second.
    last_sweep: Mutex<Instant>,
}

impl CallLimiter {
    /// The limiter of `rate`.
    pub(crate) fn new(rate: CallRate) -> Self {
        // Validation keeps the interval at 1µs or more; the fallback only guards the type.
        let quota = Quota::with_period(rate.interval.max(Duration::from_micros(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(rate.burst);
        Self { limiter: RateLimiter::keyed(quota), last_sweep: Mutex::new(Instant::now()) }
    }

    /// Spends `calls` of `identity`'s bucket, or says how long until they are there (`None`:
    /// never, the batch is larger than the burst).
    fn spend(&self, identity: &Arc<str>, calls: NonZeroU32) -> Result<(), Option<Duration>> {
        if self.limiter.len() >= SWEEP_AT {
            self.sweep();
        }
        match self.limiter.check_key_n(identity, calls) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Some(not_until.wait_time_from(self.limiter.clock().now()))),
            Err(_) => Err(None),
        }
    }

    fn sweep(&self) {
        let mut last = self.last_sweep.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() >= Duration::from_secs(1) {
            *last = Instant::now();
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

/// The identity a call is counted against.
fn identity<B>(request: &Request<B>) -> Arc<str> {
    if let Some(user) = request.extensions().get::<AuthenticatedUser>() {
        return Arc::clone(&user.0);
    }
    let address = request.extensions().get::<ClientAddr>().map(|client| client.0.ip());
    Arc::from(address.map_or_else(|| "-".to_string(), |ip: IpAddr| format!("address {ip}")))
}

/// The check of the routed backend's `rate_limit`, below the transport checks (it counts the
/// requests of the parsed body).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallLimits;

impl<B> ValidateRequest<B> for CallLimits {
    type ResponseBody = ResponseBody;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<ResponseBody>> {
        let Some(Target(backend)) = request.extensions().get::<Target>() else { return Ok(()) };
        let Some(limiter) = backend.rate_limit() else { return Ok(()) };
        let Some(ParsedBody(body)) = request.extensions().get::<ParsedBody>() else { return Ok(()) };
        let messages = body.messages();
        let calls = messages.iter().filter(|message| message.kind() == Kind::Request).count();
        let Some(calls) = NonZeroU32::new(u32::try_from(calls).unwrap_or(u32::MAX)) else { return Ok(()) };
        let who = identity(request);
        let Err(wait) = limiter.spend(&who, calls) else { return Ok(()) };
        let id = messages.iter().find(|message| message.kind() == Kind::Request).and_then(|message| message.id_bytes());
        Err(limited(backend.name(), &who, wait, id))
    }
}

/// The `429`: `Retry-After` in whole seconds (at least one), the JSON-RPC error with the id.
fn limited(backend: &str, who: &str, wait: Option<Duration>, id: Option<bytes::Bytes>) -> Response<ResponseBody> {
    tracing::debug!(backend, identity = who, "call refused: rate limit reached");
    let (seconds, message) = match wait {
        Some(wait) => {
            let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            (Some(seconds), format!("rate limit of backend `{backend}` reached; retry after {seconds} s"))
        }
        None => (None, format!("this batch has more requests than backend `{backend}`'s rate limit allows at once")),
    };
    let mut rejection = Rejection::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        .with_raw_id(id.unwrap_or_else(|| bytes::Bytes::from_static(b"null")));
    if let Some(seconds) = seconds {
        rejection = rejection.with_data("retry_after", seconds.into());
    }
    let mut response = rejection.into_response();
    if let Some(seconds) = seconds {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The layer of every backend's `rate_limit`.
pub(crate) fn layer() -> ValidateRequestHeaderLayer<CallLimits> {
    ValidateRequestHeaderLayer::custom(CallLimits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_per_identity_allows_its_burst_then_says_how_long_to_wait() {
        let burst = NonZeroU32::new(3).unwrap();
        let limiter = CallLimiter::new(CallRate { interval: Duration::from_secs(60), burst });
        let (alice, bob): (Arc<str>, Arc<str>) = (Arc::from("alice"), Arc::from("bob"));
        let one = NonZeroU32::MIN;
        for _ in 0..3 {
            assert_eq!(limiter.spend(&alice, one), Ok(()));
        }
        let wait = limiter.spend(&alice, one).unwrap_err().unwrap();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60), "{wait:?}");
        assert_eq!(limiter.spend(&bob, NonZeroU32::new(3).unwrap()), Ok(()), "bob has a bucket of his own");
        assert_eq!(limiter.spend(&bob, NonZeroU32::new(4).unwrap()), Err(None), "a batch beyond the burst never fits");
    }
}
