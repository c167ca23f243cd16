//! The facts one layer of the stack hands the layers below it, through request extensions.
//!
//! They live here, in a leaf module, so that a layer that reads a fact does not depend on the
//! layer that wrote it: `server.rs` writes [`ClientAddr`], `forwarded.rs` may correct it,
//! `auth.rs` writes [`AuthenticatedUser`], `route.rs` writes [`Target`] (and [`Rest`] for the
//! REST face's paths), `streamable.rs` writes [`ParsedBody`].

use std::{net::SocketAddr, sync::Arc};

use crate::{backend::Backend, jsonrpc::Body};

/// The address of the client at the other end of the connection (or, behind a trusted proxy,
/// the client the proxy speaks for), for logs of failed logins and later rate limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub SocketAddr);

/// The name of the authenticated user.
#[derive(Debug, Clone)]
pub(crate) struct AuthenticatedUser(pub Arc<str>);

/// A POST body as the Streamable-HTTP checks parsed and validated it, so that backends which
/// work on JSON-RPC messages (stdio) do not parse it again. The body itself stays in the request
/// for backends that want the bytes (native).
#[derive(Debug, Clone)]
pub(crate) struct ParsedBody(pub Body);

/// The backend a request was routed to.
#[derive(Debug, Clone)]
pub(crate) struct Target(pub Arc<Backend>);

/// A request for the REST face of the routed backend rather than its MCP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rest {
    /// `GET /<name>/openapi.json`; the path the backend's routes are under (`/<name>`, or
    /// nothing when the backend was routed by its host name).
    Document {
        /// The prefix of the backend's REST paths as the client addressed them.
        prefix: String,
    },
    /// `POST /<name>/tools/<tool>`, the tool's name percent-decoded.
    Tool(String),
}
