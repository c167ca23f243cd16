//! The two body types that flow through berth's tower stack.
//!
//! Every layer speaks `Request<RequestBody>` and answers `Response<ResponseBody>`, so layers
//! compose without generic plumbing and unit tests can build requests from plain bytes.

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody, combinators::UnsyncBoxBody};

/// The error a request body may fail with (a client that went away, a malformed chunk).
///
/// A named type rather than `Box<dyn Error>`: a trait object in the body type makes rustc lose
/// `Send` on futures that hold a request across an `await` (a known higher-ranked lifetime
/// limitation), and a named type sidesteps it.
#[derive(Debug)]
pub(crate) struct BodyError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl BodyError {
    /// Wraps any error.
    pub(crate) fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(error.into())
    }

    /// Whether the body failed because it was late (a [`BodyTimeout`] anywhere in its chain of
    /// causes), which is the client's fault in a different way from a malformed body.
    pub(crate) fn is_timeout(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*self.0);
        while let Some(error) = cause {
            if error.is::<BodyTimeout>() {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

/// A request body that did not arrive completely within `server.body_read_timeout` of its head.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} of its head (server.body_read_timeout)")]
pub(crate) struct BodyTimeout(pub(crate) Duration);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A request body: hyper's incoming stream, or bytes already buffered by a layer.
pub(crate) type RequestBody = UnsyncBoxBody<Bytes, BodyError>;

/// A response body: JSON, or an SSE stream that may stay open for hours.
pub(crate) type ResponseBody = BoxBody<Bytes, Infallible>;

/// Wraps buffered bytes as a [`RequestBody`].
pub(crate) fn request_body(bytes: impl Into<Bytes>) -> RequestBody {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed_unsync()
}

/// Wraps buffered bytes as a [`ResponseBody`].
pub(crate) fn response_body(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed()
}
