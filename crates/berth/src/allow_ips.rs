//! Source-address allow-lists: `server.allow_ips`, checked before authentication, and
//! `backends.<name>.allow_ips`, checked after routing.
//!
//! The address checked is the client's as `forwarded.rs` settled it: the peer, or behind a
//! trusted proxy the client it speaks for. A client outside the list gets `403`
//! `{"error":"forbidden_address"}`; the public paths (`/`, `/readyz`) sit above the server-wide
//! check and stay reachable for health checks.

use std::{net::IpAddr, sync::Arc};

use http::{Request, Response, StatusCode};
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use crate::{
    body::ResponseBody,
    extensions::{ClientAddr, Target},
    ip_block::IpBlock,
    reply::Rejection,
};

/// The addresses allowed by one `allow_ips` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllowIps(Vec<IpBlock>);

impl AllowIps {
    /// The list of `blocks`; validation refuses an empty one, which would allow nobody.
    pub(crate) fn new(blocks: Vec<IpBlock>) -> Self {
        Self(blocks)
    }

    /// Whether `client` is in the list; an unknown address is not.
    fn permits(&self, client: Option<IpAddr>) -> bool {
        client.is_some_and(|ip| self.0.iter().any(|block| block.contains(ip)))
    }

    /// The check of one request: passes it, or answers the `403`.
    #[allow(clippy::result_large_err)] // The error is the answer itself, as ValidateRequest wants it.
    fn check<B>(&self, request: &Request<B>, scope: &str) -> Result<(), Response<ResponseBody>> {
        let client = request.extensions().get::<ClientAddr>().map(|client| client.0.ip());
        if self.permits(client) {
            return Ok(());
        }
        // Debug, not warn: scanners knock all day, and every refusal is counted by status.
        tracing::debug!(
            client = client.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
            path = request.uri().path(),
            scope,
            "refused: client address not in allow_ips"
        );
        let message = format!("this client address may not use {scope}");
        Err(Rejection::new(StatusCode::FORBIDDEN, "forbidden_address", message).into_response())
    }
}

/// The server-wide check, of `server.allow_ips`.
#[derive(Debug, Clone)]
pub(crate) struct ServerAllowIps(Arc<AllowIps>);

impl<B> ValidateRequest<B> for ServerAllowIps {
    type ResponseBody = ResponseBody;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<ResponseBody>> {
        self.0.check(request, "this server")
    }
}

/// The layer of `server.allow_ips`.
pub(crate) fn server_layer(allowed: Arc<AllowIps>) -> ValidateRequestHeaderLayer<ServerAllowIps> {
    ValidateRequestHeaderLayer::custom(ServerAllowIps(allowed))
}

/// The per-backend check, of the routed backend's `allow_ips`; below the router, which found
/// the [`Target`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BackendAllowIps;

impl<B> ValidateRequest<B> for BackendAllowIps {
    type ResponseBody = ResponseBody;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<ResponseBody>> {
        let Some(Target(backend)) = request.extensions().get::<Target>() else { return Ok(()) };
        match backend.allow_ips() {
            Some(allowed) => allowed.check(request, &format!("backend `{}`", backend.name())),
            None => Ok(()),
        }
    }
}

/// The layer of every backend's `allow_ips`.
pub(crate) fn backend_layer() -> ValidateRequestHeaderLayer<BackendAllowIps> {
    ValidateRequestHeaderLayer::custom(BackendAllowIps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_permits_its_blocks_and_never_an_unknown_address() {
        let list = AllowIps::new(["10.0.0.0/8", "2001:db8::/32"].map(|b| IpBlock::parse(b).unwrap()).to_vec());
        for (ip, expected) in
            [("10.1.2.3", true), ("::ffff:10.0.0.1", true), ("2001:db8::7", true), ("11.0.0.1", false)]
        {
            assert_eq!(list.permits(Some(ip.parse().unwrap())), expected, "{ip}");
        }
        assert!(!list.permits(None), "a request whose address berth does not know is refused");
    }
}
