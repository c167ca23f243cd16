//! The whole HTTP stack, assembled in one place, outermost layer first.

use std::{any::Any, convert::Infallible, sync::Arc};

use arc_swap::ArcSwap;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use tower::{
    ServiceBuilder,
    util::{BoxCloneSyncService, MapResponseLayer},
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    trace::{DefaultOnFailure, TraceLayer},
};

use crate::{
    access::{self, Memberships},
    allow_ips::{self, AllowIps},
    auth::{self, Authenticator},
    body::{BodyError, RequestBody, ResponseBody},
    forwarded::{self, TrustedProxies},
    host::{self, HostPolicy},
    host_field,
    jsonrpc::INTERNAL_ERROR,
    mcp_params::McpParamsLayer,
    metrics::MCP_LISTENER,
    observe::{ObserveLayer, Observer, count_statuses},
    public, rate_limit,
    reply::Rejection,
    rest::{RestLayer, RestSettings},
    route::{self, Dispatch, Routes},
    streamable,
    visibility::VisibilityLayer,
};

/// The body of every response leaving the stack.
pub(crate) type OutBody = UnsyncBoxBody<Bytes, BodyError>;

/// The assembled stack, as one cloneable service per connection.
pub(crate) type HttpStack = BoxCloneSyncService<Request<RequestBody>, Response<OutBody>, Infallible>;

/// The stack a listener serves, replaceable while it serves: a reload builds a new stack and
/// swaps it in; each request runs through the stack current when it arrived, and connections
/// stay open across the swap.
#[derive(Clone)]
pub(crate) struct LiveStack(Arc<ArcSwap<HttpStack>>);

impl LiveStack {
    /// Serves `stack` until replaced.
    pub(crate) fn new(stack: HttpStack) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(stack)))
    }

    /// The stack for the next request.
    pub(crate) fn current(&self) -> HttpStack {
        HttpStack::clone(&self.0.load())
    }

    /// Serves `stack` to every request from now on.
    pub(crate) fn replace(&self, stack: HttpStack) {
        self.0.store(Arc::new(stack));
    }
}

impl std::fmt::Debug for LiveStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveStack")
    }
}

impl From<HttpStack> for LiveStack {
    fn from(stack: HttpStack) -> Self {
        Self::new(stack)
    }
}

/// What the stack is built from.
#[derive(Debug, Clone)]
pub(crate) struct StackParts {
    /// The backends and host routing.
    pub routes: Arc<Routes>,
    /// Who may pass.
    pub authenticator: Authenticator,
    /// Allowed hosts and origins.
    pub host_policy: Arc<HostPolicy>,
    /// Largest accepted POST body.
    pub max_body_bytes: usize,
    /// Whether the MCP port serves TLS (the scheme of the REST face's documents).
    pub tls: bool,
    /// Proxies whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// `server.allow_ips`: the client addresses that may use any MCP route, when restricted.
    pub allow_ips: Option<Arc<AllowIps>>,
    /// The users' groups, for the backends' `allow` lists (replaced on reload).
    pub memberships: Arc<ArcSwap<Memberships>>,
    /// Where metrics and audit lines go.
    pub observer: Observer,
    /// Whether anything reads the observations (an admin listener or an audit log): without,
    /// the stack does not observe at all, so an unobserved berth pays nothing for it.
    pub observe: bool,
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response<ResponseBody> {
    tracing::error!("a request handler panicked; answering 500");
    Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        .with_code(INTERNAL_ERROR)
        .into_response()
}

/// Builds the stack. Each layer's comment says why it is there and why in that place.
pub(crate) fn build(parts: StackParts) -> HttpStack {
    let rest = RestSettings::new(parts.max_body_bytes, parts.tls, !matches!(parts.authenticator, Authenticator::None));
    let service = ServiceBuilder::new()
        // Mark credentials sensitive first, so that no later layer (tracing above all) can
        // print them, even at debug level.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
            header::COOKIE,
        ]))
        // Settle who the client is and which host it asked for before any layer reads them:
        // only trusted proxies may speak for the client, and untrusted X-Forwarded-* claims are
        // removed so that no later layer or backend can be fooled by them.
        .layer(forwarded::layer(Arc::clone(&parts.trusted_proxies)))
        // Trace every request, public ones included, with method, path and status; headers
        // marked sensitive above are shown redacted.
        // 5xx answers are logged where they arise (a panic, a backend that failed); a 503 from
        // /readyz while a backend starts is expected, so the trace reports them at debug.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)))
        // Count every answer by status, public ones and refusals included, right below the
        // trace so that both see the same requests; above the panic guard, so its 500s count.
        .option_layer(
            parts
                .observe
                .then(|| MapResponseLayer::new(count_statuses(Arc::clone(parts.observer.metrics()), MCP_LISTENER))),
        )
        // Turn a panic anywhere below into a 500 JSON answer instead of a dropped connection.
        .layer(CatchPanicLayer::custom(panic_response))
        // Refuse a missing (HTTP/1.1), repeated or invalid Host field before any layer reads
        // the host, public routes included: RFC 9112 owes such requests a 400.
        .layer(host_field::layer())
        // Answer health, readiness and OAuth discovery here, above every check that follows:
        // health checkers carry no credentials and may use any Host, and OAuth clients must
        // fail fast rather than meet a 401. Everything below is the authenticated part.
        .layer(public::layer(Arc::clone(&parts.routes)))
        // Refuse client addresses outside server.allow_ips first of all the private part: they
        // get nothing else, not even a Host check or a password prompt. Below the public paths,
        // which health checkers reach from anywhere.
        .option_layer(parts.allow_ips.map(allow_ips::server_layer))
        // Refuse foreign Host and Origin headers (DNS rebinding, cross-site requests) before
        // spending any work on credentials.
        .layer(host::layer(Arc::clone(&parts.host_policy)))
        // Authenticate, log failures, and remove the client's Authorization header so that no
        // backend ever sees it.
        .layer(auth::layer(parts.authenticator))
        // Find the backend (404 for unknown names) only after authentication, so that
        // anonymous clients cannot probe which backends exist.
        .layer(route::layer(Arc::clone(&parts.routes)))
        // Refuse client addresses outside the routed backend's allow_ips, before any of the
        // body is read.
        .layer(allow_ips::backend_layer())
        // Answer the REST face (openapi.json, POST /tools/<tool>) here: below routing and
        // authentication, which it shares with the MCP route, and above the transport rules,
        // since its requests are not MCP messages. It turns each into MCP requests sent with
        // the caller's identity through every layer below, so that the observer, the allow
        // list, the rate limit and visibility treat a REST caller exactly as an MCP client.
        .layer(RestLayer(Arc::new(rest)))
        // Apply the Streamable-HTTP transport rules (406/415/413/400/405) identically for
        // every kind of backend, and buffer POST bodies within the limit.
        .layer(streamable::layer(parts.max_body_bytes))
        // Observe each MCP exchange (metrics, audit) to the end of its answer. Below the
        // transport checks, because it reads the body they parsed (method, tool, resource) and
        // the backend and user the layers above found; above the Mcp-Param checks, so that
        // their refusals count as refused requests, and so that berth's own tools/list is not
        // counted as a client's.
        .option_layer(parts.observe.then(|| ObserveLayer(parts.observer.clone())))
        // Refuse identities the backend's allow list does not admit. Below the transport
        // checks, whose parsed body gives the refusal its request id, and below the observer,
        // so that refusals are audited with their user and backend.
        .layer(access::layer(Arc::clone(&parts.memberships)))
        // Count each admitted identity's calls against the backend's rate limit: after the
        // allow list (a refused identity spends nothing), below the observer (429s are audited).
        .layer(rate_limit::layer())
        // Hide the tools, prompts and resources the identity may not see: refuse calls on them
        // and take them out of list answers. Below the allow list and the rate limit (a refused
        // call was still a call), above the Mcp-Param checks, whose own tools/list must see
        // every tool.
        .layer(VisibilityLayer(Arc::clone(&parts.memberships)))
        // Check 2026-07-28 Mcp-Param-* headers against the tool arguments, for every kind of
        // backend. It sits below the transport checks because it needs the body they buffered
        // and the Mcp-Method and Mcp-Name headers they verified, and right above Dispatch so
        // that the tools/list it sends itself, when it does not know a backend's tools yet,
        // goes straight to the backend (no client credentials or transport rules apply to it).
        .layer(McpParamsLayer)
        .service(Dispatch);
    let service = tower::ServiceExt::map_response(service, |response: Response<_>| {
        response.map(|body| body.map_err(BodyError::new).boxed_unsync())
    });
    BoxCloneSyncService::new(service)
}
