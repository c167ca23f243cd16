//! The router: which backend a request is for.
//!
//! `/<name>/mcp` reaches backend `<name>`, and so do its REST face's `/<name>/openapi.json` and
//! `/<name>/tools/<tool>` (the tool's name percent-encoded, `/` as `%2F`). With
//! `server.base_domain = "mcp.example.com"`, a request for `fs.mcp.example.com/mcp` (or
//! `/openapi.json`, `/tools/<tool>`) reaches backend `fs` too, so that one wildcard Traefik
//! router can serve every backend. The resolved backend travels in the request's extensions to
//! [`Dispatch`], after the transport checks.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use tower::Service;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use crate::{
    backend::Backend,
    body::{RequestBody, ResponseBody},
    extensions::{AuthenticatedUser, Rest, Target},
    host::{BaseDomain, request_host},
    reply::Rejection,
};

/// The backends by name, and the domain used for host routing: a table that a reload replaces
/// as a whole, so that every holder of the [`Routes`] sees the new one at its next request.
#[derive(Debug, Default)]
pub(crate) struct Routes(ArcSwap<Table>);

/// One generation of the routing table.
#[derive(Debug, Default)]
struct Table {
    backends: HashMap<String, Arc<Backend>>,
    base_domain: Option<BaseDomain>,
}

impl Table {
    fn new(backends: impl IntoIterator<Item = Arc<Backend>>, base_domain: Option<BaseDomain>) -> Self {
        Self { backends: backends.into_iter().map(|b| (b.name().to_string(), b)).collect(), base_domain }
    }
}

impl Routes {
    /// Routes to `backends`, with host routing below `base_domain` if given.
    pub(crate) fn new(backends: impl IntoIterator<Item = Arc<Backend>>, base_domain: Option<BaseDomain>) -> Self {
        Self(ArcSwap::from_pointee(Table::new(backends, base_domain)))
    }

    /// Every backend now, sorted by name.
    pub(crate) fn backends(&self) -> Vec<Arc<Backend>> {
        let mut backends: Vec<_> = self.0.load().backends.values().cloned().collect();
        backends.sort_by(|a, b| a.name().cmp(b.name()));
        backends
    }

    /// The backend named `name` now.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Backend>> {
        self.0.load().backends.get(name).cloned()
    }

    /// Replaces the whole table: requests routed from now on see `backends` and `base_domain`;
    /// those already routed keep the backend they were given.
    pub(crate) fn replace(&self, backends: impl IntoIterator<Item = Arc<Backend>>, base_domain: Option<BaseDomain>) {
        self.0.store(Arc::new(Table::new(backends, base_domain)));
    }

    /// The backend name a request addresses and what it asks for, if its path and host have
    /// the shape of an MCP endpoint or of the REST face.
    fn target<'a>(table: &Table, path: &'a str, host: Option<&'a str>) -> Option<(&'a str, Option<Rest>)> {
        let path = path.strip_suffix('/').unwrap_or(path);
        if let (Some(domain), Some(host)) = (&table.base_domain, host)
            && let Some(label) = host.strip_suffix(domain.name()).and_then(|rest| rest.strip_suffix('.'))
            && !label.contains('.')
            && !label.is_empty()
            && let Some(endpoint) = endpoint(path, "")
        {
            return Some((label, endpoint));
        }
        let rest = path.strip_prefix('/')?;
        let (name, _) = rest.split_once('/')?;
        if name.is_empty() {
            return None;
        }
        Some((name, endpoint(&path[name.len() + 1..], &path[..name.len() + 1])?))
    }

    /// Resolves a request to a backend, or the 404 to answer; with what the REST face is asked,
    /// when it is.
    pub(crate) fn resolve<B>(&self, request: &Request<B>) -> Result<(Arc<Backend>, Option<Rest>), Rejection> {
        let host = request_host(request);
        let table = self.0.load();
        let (name, rest) = Self::target(&table, request.uri().path(), host.as_deref()).ok_or_else(|| {
            Rejection::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route: MCP endpoints are at /<backend>/mcp, REST ones at /<backend>/openapi.json \
                 and /<backend>/tools/<tool>",
            )
        })?;
        let backend = table.backends.get(name).cloned().ok_or_else(|| {
            Rejection::new(StatusCode::NOT_FOUND, "unknown_backend", format!("no backend named `{name}`"))
        })?;
        Ok((backend, rest))
    }
}

/// What `path` (below a backend's prefix `prefix`) asks for: `/mcp` the MCP endpoint (`None`),
/// `/openapi.json` and `/tools/<tool>` the REST face; anything else nothing.
fn endpoint(path: &str, prefix: &str) -> Option<Option<Rest>> {
    match path {
        "/mcp" => Some(None),
        "/openapi.json" => Some(Some(Rest::Document { prefix: prefix.to_string() })),
        _ => {
            let tool = path.strip_prefix("/tools/").filter(|tool| !tool.is_empty() && !tool.contains('/'))?;
            Some(Some(Rest::Tool(percent_decode(tool)?)))
        }
    }
}

/// `%XX` escapes decoded; `None` when one is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// The [`ValidateRequest`] that resolves the backend: a `404` when there is none, else the
/// backend travels on as a [`Target`].
///
/// Routing is synchronous (a path, a host and a map lookup), so it is a check that may answer
/// rather than a hand-written service.
#[derive(Debug, Clone)]
pub(crate) struct ValidateRoute(Arc<Routes>);

impl<B> ValidateRequest<B> for ValidateRoute {
    type ResponseBody = ResponseBody;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<ResponseBody>> {
        let (backend, rest) = self.0.resolve(request).map_err(Rejection::into_response)?;
        request.extensions_mut().insert(Target(backend));
        if let Some(rest) = rest {
            request.extensions_mut().insert(rest);
        }
        Ok(())
    }
}

/// The layer that routes each request to its backend over `routes`.
pub(crate) fn layer(routes: Arc<Routes>) -> ValidateRequestHeaderLayer<ValidateRoute> {
    ValidateRequestHeaderLayer::custom(ValidateRoute(routes))
}

/// The innermost service: hands the request to its [`Target`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Dispatch;

impl Service<Request<RequestBody>> for Dispatch {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        Box::pin(async move {
            let Some(Target(backend)) = request.extensions().get::<Target>().cloned() else {
                // Only reachable if the stack is assembled without the router: a bug, not a
                // client error, but still an answer rather than a dropped connection.
                return Ok(
                    Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no route resolved").into_response()
                );
            };
            if let Some(user) = request.extensions().get::<AuthenticatedUser>() {
                tracing::debug!(user = &*user.0, backend = backend.name(), "dispatching");
            }
            Ok(backend.handle(request).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{backend::BackendKind, body::request_body, body::response_body, mcp_params::ToolSchemas};
    use tower::util::BoxCloneSyncService;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    fn echo_backend(name: &str) -> Arc<Backend> {
        let label = name.to_string();
        let service = BoxCloneSyncService::new(service_fn(move |_: Request<RequestBody>| {
            let label = label.clone();
            async move { Ok::<_, Infallible>(Response::new(response_body(label))) }
        }));
        Arc::new(Backend::new(name, false, BackendKind::Native(service), Arc::new(ToolSchemas::new(name))))
    }

    #[tokio::test]
    async fn paths_and_hosts() {
        let domain = BaseDomain::parse("mcp.example.com").unwrap();
        let routes = Arc::new(Routes::new([echo_backend("fs"), echo_backend("git")], Some(domain)));
        let table = [
            ("/fs/mcp", "berth.local", 200, "fs"),
            ("/git/mcp/", "berth.local", 200, "git"),
            ("/nope/mcp", "berth.local", 404, "unknown_backend"),
            ("/fs/other", "berth.local", 404, "not_found"),
            ("/fs", "berth.local", 404, "not_found"),
            ("/mcp", "fs.mcp.example.com", 200, "fs"),
            ("/mcp", "GIT.mcp.example.com:443", 200, "git"),
            ("/mcp", "x.fs.mcp.example.com", 404, "not_found"),
            ("/mcp", "nope.mcp.example.com", 404, "unknown_backend"),
            ("/fs/mcp", "git.mcp.example.com", 200, "fs"),
            ("/fs/openapi.json", "berth.local", 200, "fs"),
            ("/fs/tools/echo", "berth.local", 200, "fs"),
            ("/fs/tools/", "berth.local", 404, "not_found"),
            ("/fs/tools/a/b", "berth.local", 404, "not_found"),
            ("/fs/tools/%zz", "berth.local", 404, "not_found"),
            ("/nope/tools/echo", "berth.local", 404, "unknown_backend"),
            ("/tools/echo", "git.mcp.example.com", 200, "git"),
            ("/openapi.json", "fs.mcp.example.com", 200, "fs"),
        ];
        for (path, host, status, body) in table {
            let service = ServiceBuilder::new().layer(layer(Arc::clone(&routes))).service(Dispatch);
            let request = Request::builder().uri(path).header("host", host).body(request_body("")).unwrap();
            let response = service.oneshot(request).await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{host}{path}");
            let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&bytes);
            assert!(text.contains(body), "{host}{path}: {text}");
        }
    }

    #[test]
    fn rest_paths_say_what_they_ask_for() {
        let table = [
            ("/fs/mcp", None),
            ("/fs/openapi.json", Some(Rest::Document { prefix: "/fs".into() })),
            ("/fs/tools/get-sum", Some(Rest::Tool("get-sum".into()))),
            ("/fs/tools/a%2Fb%20c%E2%9C%93", Some(Rest::Tool("a/b c\u{2713}".into()))),
        ];
        let routes = Table::default();
        for (path, expected) in table {
            assert_eq!(Routes::target(&routes, path, None), Some(("fs", expected)), "{path}");
        }
        for bad in ["/fs/tools/%", "/fs/tools/%4", "/fs/tools/%FF", "/fs/tools/x/y", "//openapi.json"] {
            assert_eq!(Routes::target(&routes, bad, None), None, "{bad}");
        }
        let domain = Table { base_domain: BaseDomain::parse("mcp.example.com").ok(), ..Table::default() };
        assert_eq!(
            Routes::target(&domain, "/openapi.json", Some("fs.mcp.example.com")),
            Some(("fs", Some(Rest::Document { prefix: String::new() })))
        );
    }
}
