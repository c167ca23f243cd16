//! The admin listener: `/metrics`, `/api/...` and the status page `/`, on a second port that is
//! never the MCP one.
//!
//! Its stack is small and built here in one ordered function, as `stack.rs` builds the MCP one:
//! sensitive headers, `X-Forwarded-*` from trusted proxies only, tracing, status counts, a
//! panic guard, then `/metrics` without credentials when `metrics_auth = false` (the exemption
//! is a layer above authentication, as `public.rs` is on the MCP port), then HTTP Basic with
//! the admin users only (the same [`Authenticator`] and user store as the MCP port, restricted
//! to them), then the refusal of changes another site asks a browser for (`SameOrigin`), then
//! the routes that act through the reloader (`admin/config.rs`), then [`AdminApi`].
//!
//! The API reads the backends through [`Backend::status`], a snapshot taken when asked: the
//! API's actions (start, stop, restart, reload) go through the same small interface. `/` is the
//! status page (`admin/page.rs`).

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::{Instant, SystemTime},
};

use futures::future::ready;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use tower::{Service, ServiceBuilder, util::BoxCloneSyncService};
use tower_http::{
    catch_panic::CatchPanicLayer,
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    trace::TraceLayer,
    validate_request::{ValidateRequest, ValidateRequestHeaderLayer},
};

mod call;
mod config;
mod page;
mod redact;

use config::ConfigLayer;

use crate::{
    audit::{AuditEvent, rfc3339},
    auth::{self, Authenticator},
    backend::{Backend, BackendStatus},
    body::{BodyError, RequestBody, ResponseBody, response_body},
    extensions::{AuthenticatedUser, ClientAddr},
    forwarded::{self, TrustedProxies},
    gateway::Reloader,
    host::parse_origin,
    metrics::{ADMIN_LISTENER, Metrics},
    observe::{Observer, count_statuses},
    reply::{Rejection, json_response},
    route::Routes,
    stack::HttpStack,
};

/// Largest body the admin API reads (a tool call, a backend's table): 1 MiB, as its refusals say.
const MAX_BODY: usize = 1024 * 1024;

/// The OpenMetrics content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the admin stack is built from.
#[derive(Debug, Clone)]
pub(crate) struct AdminParts {
    /// The backends.
    pub(crate) routes: Arc<Routes>,
    /// The admin users.
    pub(crate) authenticator: Authenticator,
    /// Metrics and audit.
    pub(crate) observer: Observer,
    /// Whether `/metrics` needs credentials.
    pub(crate) metrics_auth: bool,
    /// Proxies whose `X-Forwarded-*` headers are believed.
    pub(crate) trusted_proxies: Arc<TrustedProxies>,
    /// What `POST /api/reload` runs and `GET /api/config` shows.
    pub(crate) reloader: Option<Arc<Reloader>>,
}

fn metrics_response(metrics: &Metrics) -> Response<ResponseBody> {
    let mut response = Response::new(response_body(metrics.encode()));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
    response
}

/// `/metrics` answered before authentication when `metrics_auth = false`.
#[derive(Debug, Clone)]
struct OpenMetrics(Arc<Metrics>);

impl<B> ValidateRequest<B> for OpenMetrics {
    type ResponseBody = ResponseBody;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<ResponseBody>> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => Err(metrics_response(&self.0)),
            _ => Ok(()),
        }
    }
}

/// Refuses a request that changes something when a browser says it comes from another site
/// (`Sec-Fetch-Site: cross-site`/`same-site`, or an `Origin` whose host is not the `Host`): a
/// page elsewhere must not make an admin's browser, with its cached Basic credentials, stop
/// a backend. Clients that are not browsers send neither header.
#[derive(Debug, Clone, Copy)]
struct SameOrigin;

impl<B> ValidateRequest<B> for SameOrigin {
    type ResponseBody = ResponseBody;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<ResponseBody>> {
        if matches!(*request.method(), Method::GET | Method::HEAD) {
            return Ok(());
        }
        let headers = request.headers();
        let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let cross_site = matches!(fetch_site, Some("cross-site" | "same-site"));
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        // An `Origin` that does not parse (`null`, from a sandboxed page) is foreign too.
        let foreign_origin = headers.get(header::ORIGIN).is_some_and(|origin| {
            let origin = origin.to_str().ok().and_then(parse_origin);
            !origin.is_some_and(|origin| host.is_some_and(|host| origin.is_authority(host)))
        });
        if cross_site || foreign_origin {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "cross_site",
                "a request from another site cannot change anything on the admin listener",
            )
            .into_response());
        }
        Ok(())
    }
}

/// Builds the admin stack; each layer's comment says why it is there.
pub(crate) fn build(parts: AdminParts) -> HttpStack {
    let metrics = Arc::clone(parts.observer.metrics());
    let open_metrics =
        (!parts.metrics_auth).then(|| ValidateRequestHeaderLayer::custom(OpenMetrics(Arc::clone(&metrics))));
    let service = ServiceBuilder::new()
        // Credentials are marked sensitive before anything can log them.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
            header::COOKIE,
        ]))
        // The client address in refusal logs and audit lines is believed from trusted proxies only.
        .layer(forwarded::layer(Arc::clone(&parts.trusted_proxies)))
        // Every request is traced, as on the MCP port.
        .layer(TraceLayer::new_for_http())
        // Every answer is counted by status, refusals included.
        .map_response(count_statuses(Arc::clone(&metrics), ADMIN_LISTENER))
        // A panic below is a 500, not a dropped connection.
        .layer(CatchPanicLayer::custom(|_| {
            Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error").into_response()
        }))
        // An open /metrics (metrics_auth = false) is answered here, above authentication, so the
        // exemption shows in the structure; nothing else is open.
        .option_layer(open_metrics)
        // Admin users only; others get the same 401 as a wrong password.
        .layer(auth::layer(parts.authenticator))
        // Nothing changes at another site's request (CSRF through a browser's cached credentials).
        .layer(ValidateRequestHeaderLayer::custom(SameOrigin))
        // The configuration: reloaded and shown.
        .option_layer(parts.reloader.map(|reloader| ConfigLayer { reloader, observer: parts.observer.clone() }))
        .service(AdminApi { routes: parts.routes, observer: parts.observer });
    let service = tower::ServiceExt::map_response(service, |response: Response<_>| {
        response.map(|body| body.map_err(BodyError::new).boxed_unsync())
    });
    BoxCloneSyncService::new(service)
}

/// The routes behind authentication.
#[derive(Debug, Clone)]
struct AdminApi {
    routes: Arc<Routes>,
    observer: Observer,
}

/// A backend as `/api/backends` shows it.
#[derive(serde::Serialize)]
struct BackendView<'a> {
    name: &'a str,
    #[serde(flatten)]
    status: BackendStatus,
}

fn view(backend: &Backend) -> BackendView<'_> {
    BackendView { name: backend.name(), status: backend.status() }
}

fn not_found(message: impl Into<String>) -> Response<ResponseBody> {
    Rejection::new(StatusCode::NOT_FOUND, "not_found", message).into_response()
}

impl AdminApi {
    fn answer(&self, method: &Method, path: &str) -> Response<ResponseBody> {
        if path == "/" && method == Method::GET {
            return page::response(&self.routes.backends(), self.observer.recent());
        }
        let path = path.trim_end_matches('/');
        if let Some(id) = path.strip_prefix("/api/sessions/").filter(|id| !id.is_empty() && !id.contains('/')) {
            return self.session(method, id);
        }
        let api = path == "/metrics" || path.starts_with("/api/");
        if api && method != Method::GET {
            let mut response =
                Rejection::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "only GET is served here")
                    .into_response();
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        match path.strip_prefix("/api/backends") {
            _ if path == "/metrics" => metrics_response(self.observer.metrics()),
            _ if path == "/api/sessions" => {
                let mut sessions: Vec<_> =
                    self.routes.backends().iter().filter_map(|backend| backend.sessions()).flatten().collect();
                sessions.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
                json_response(StatusCode::OK, &json!({ "sessions": sessions }))
            }
            Some("") => {
                let backends = self.routes.backends();
                let backends: Vec<_> = backends.iter().map(|b| view(b)).collect();
                json_response(StatusCode::OK, &json!({ "backends": backends }))
            }
            Some(rest) if rest.ends_with("/logs") && rest.starts_with('/') && rest.matches('/').count() == 2 => {
                let name = &rest[1..rest.len() - "/logs".len()];
                match self.routes.get(name) {
                    Some(backend) => match backend.logs() {
                        Some(lines) => json_response(StatusCode::OK, &json!({ "backend": name, "lines": lines })),
                        None => not_found(format!("backend `{name}` is native: it has no stderr")),
                    },
                    None => not_found(format!("no backend `{name}`")),
                }
            }
            Some(rest) if rest.starts_with('/') && !rest[1..].contains('/') => {
                let name = &rest[1..];
                match self.routes.get(name) {
                    Some(backend) => {
                        json_response(StatusCode::OK, &serde_json::to_value(view(&backend)).unwrap_or_default())
                    }
                    None => not_found(format!("no backend `{name}`")),
                }
            }
            _ => not_found(format!("no admin route {path}: try /metrics or /api/backends")),
        }
    }
}

impl AdminApi {
    /// `DELETE /api/sessions/{id}`: ends the session, whoever owns it; a `GET` shows it.
    fn session(&self, method: &Method, id: &str) -> Response<ResponseBody> {
        let backends = self.routes.backends();
        match *method {
            Method::GET => {
                let found = backends.iter().filter_map(|b| b.sessions()).flatten().find(|session| session.id == id);
                match found {
                    Some(session) => json_response(StatusCode::OK, &serde_json::to_value(session).unwrap_or_default()),
                    None => not_found(format!("no session `{id}`")),
                }
            }
            Method::DELETE => match backends.iter().find(|backend| backend.end_session(id)) {
                Some(backend) => json_response(StatusCode::OK, &json!({ "ended": id, "backend": backend.name() })),
                None => not_found(format!("no session `{id}`")),
            },
            _ => {
                let mut response = Rejection::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "only GET and DELETE are served here",
                )
                .into_response();
                response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, DELETE"));
                response
            }
        }
    }
}

/// One audit line per API request (scrapes of /metrics are not actions): `admin_action` for
/// the requests that change something, `admin_request` for those that read.
pub(crate) fn audit_request(
    observer: &Observer,
    request: &Request<RequestBody>,
    backend: Option<&str>,
    status: u16,
    started: Instant,
    ts: SystemTime,
) {
    let Some(audit) = observer.audit() else { return };
    let path = request.uri().path();
    if path == "/metrics" {
        return;
    }
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    audit.record(&AuditEvent {
        ts: rfc3339(ts),
        event: if reads { "admin_request" } else { "admin_action" },
        user: request.extensions().get::<AuthenticatedUser>().map(|u| &*u.0),
        client_addr: request.extensions().get::<ClientAddr>().map(|c| c.0.ip().to_string()),
        backend,
        method: Some(request.method().as_str()),
        name: Some(path),
        outcome: if status < 400 { "ok" } else { "refused" },
        status,
        duration_ms: Some(started.elapsed().as_millis() as u64),
        listener: Some(ADMIN_LISTENER),
        ..AuditEvent::default()
    });
}

impl Service<Request<RequestBody>> for AdminApi {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = futures::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let (started, ts) = (Instant::now(), SystemTime::now());
        let response = self.answer(request.method(), request.uri().path());
        audit_request(&self.observer, &request, None, response.status().as_u16(), started, ts);
        ready(Ok(response))
    }
}
