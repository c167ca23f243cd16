//! The facts one layer of the stack hands the layers below it, through request extensions.
//!
//! They live here, in a leaf module, so that a layer that reads a fact does not depend on the
//! layer that wrote it: `server.rs` writes [`ClientAddr`], `forwarded.rs` may correct it,
//! `auth.rs` writes [`AuthenticatedUser`], `route.rs` writes [`Target`].

use std::{net::SocketAddr, sync::Arc};

use crate::backend::Backend;

/// The address of the client at the other end of the connection (or, behind a trusted proxy,
/// the client the proxy speaks for), for logs of failed logins and later rate limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub SocketAddr);

/// The name of the authenticated user.
#[derive(Debug, Clone)]
pub(crate) struct AuthenticatedUser(pub Arc<str>);

/// The backend a request was routed to.
#[derive(Debug, Clone)]
pub(crate) struct Target(pub Arc<Backend>);
