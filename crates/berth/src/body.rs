//! The two body types that flow through berth's tower stack.
//!
//! Every layer speaks `Request<RequestBody>` and answers `Response<ResponseBody>`, so layers
//! compose without generic plumbing and unit tests can build requests from plain bytes.

use std::convert::Infallible;

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
}

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
