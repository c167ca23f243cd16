//! The routes that answer without authentication, and only these.
//!
//! - `GET`/`HEAD /`: `{"status":"ok"}` for Docker, Traefik and Coolify health checks; it says
//!   nothing else about the gateway.
//! - `GET /readyz`: 200 when every backend marked `required` is ready, else 503 naming those
//!   that are not.
//! - `/.well-known/oauth-*`: 404, so that OAuth-capable clients learn at once that there is no
//!   authorization server here instead of meeting a 401 and starting a login flow.
//!
//! Everything else goes on to the authenticated part of the stack, so the exemption is visible
//! in the structure of the stack rather than hidden as a path test inside the auth code.
//!
//! The layer is a [`ValidateRequest`] whose "rejection" is the public answer: tower-http's
//! validation layer means exactly "answer this request here, or pass it on unchanged", with no
//! boxing and no readiness of its own. tower's `Steer` would draw the two branches more
//! literally, but it waits until *every* branch is ready before each call, so a concurrency
//! limit added to the authenticated branch would one day make health checks queue behind the
//! backends they report on; it also needs both branches boxed into one type, and its
//! `PhantomData<Request>` is not `Sync` with berth's request body.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use serde_json::json;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use crate::{
    body::{ResponseBody, response_body},
    reply::{Rejection, json_response},
    route::Routes,
};

/// The [`ValidateRequest`] that answers the public routes and lets every other request through.
#[derive(Debug, Clone)]
pub(crate) struct PublicRoutes {
    routes: Arc<Routes>,
}

fn health(method: &Method) -> Response<ResponseBody> {
    let mut response = json_response(StatusCode::OK, &json!({"status": "ok"}));
    if method == Method::HEAD {
        *response.body_mut() = response_body("");
    }
    response
}

fn readiness(routes: &Routes) -> Response<ResponseBody> {
    let backends = routes.backends();
    let waiting: Vec<&str> = backends
        .iter()
        .filter(|backend| backend.required() && !backend.is_ready())
        .map(|backend| backend.name())
        .collect();
    if waiting.is_empty() {
        json_response(StatusCode::OK, &json!({"status": "ready"}))
    } else {
        json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "not_ready", "not_ready": waiting}))
    }
}

impl<B> ValidateRequest<B> for PublicRoutes {
    type ResponseBody = ResponseBody;

    /// `Err` carries the answer to a public route (a 200 as much as a 404); `Ok` passes the
    /// request on to the authenticated stack.
    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<ResponseBody>> {
        let method = request.method();
        match (method, request.uri().path()) {
            (&Method::GET | &Method::HEAD, "/") => Err(health(method)),
            (&Method::GET | &Method::HEAD, "/readyz") => Err(readiness(&self.routes)),
            (_, path) if path.starts_with("/.well-known/oauth-") => Err(Rejection::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "berth uses HTTP Basic authentication, not OAuth",
            )
            .into_response()),
            _ => Ok(()),
        }
    }
}

/// The layer that answers the public routes, reporting on the backends of `routes`.
pub(crate) fn layer(routes: Arc<Routes>) -> ValidateRequestHeaderLayer<PublicRoutes> {
    ValidateRequestHeaderLayer::custom(PublicRoutes { routes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        backend::{Backend, BackendKind},
        body::{RequestBody, request_body},
    };
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt, service_fn, util::BoxCloneSyncService};

    /// A native backend, which is always ready (the 503 of `/readyz` needs a stdio backend
    /// that cannot start: `tests/it/stdio.rs` covers it).
    fn backend(name: &str, required: bool) -> Arc<Backend> {
        let service = BoxCloneSyncService::new(service_fn(|_: Request<RequestBody>| async {
            Ok::<_, Infallible>(Response::new(response_body("")))
        }));
        Arc::new(Backend::new(
            name,
            required,
            BackendKind::Native(service),
            Arc::new(crate::mcp_params::ToolSchemas::new(name)),
        ))
    }

    #[tokio::test]
    async fn public_routes_are_answered_here_and_the_rest_passes_on() {
        let routes = Arc::new(Routes::new([backend("fs", true), backend("git", false)], None));
        let table = [
            ("GET", "/", 200, "{\"status\":\"ok\"}"),
            ("HEAD", "/", 200, ""),
            ("GET", "/readyz", 200, "{\"status\":\"ready\"}"),
            ("HEAD", "/readyz", 200, "{\"status\":\"ready\"}"),
            ("GET", "/.well-known/oauth-authorization-server", 404, "not OAuth"),
            ("POST", "/.well-known/oauth-protected-resource/fs/mcp", 404, "not OAuth"),
            ("POST", "/", 418, "passed on"),
            ("GET", "/fs/mcp", 418, "passed on"),
            ("GET", "/.well-known/other", 418, "passed on"),
        ];
        for (method, path, status, body) in table {
            let service = ServiceBuilder::new().layer(layer(Arc::clone(&routes))).service(service_fn(
                |_: Request<RequestBody>| async {
                    let mut response = Response::new(response_body("passed on"));
                    *response.status_mut() = StatusCode::IM_A_TEAPOT;
                    Ok::<_, Infallible>(response)
                },
            ));
            let request = Request::builder().method(method).uri(path).body(request_body("")).unwrap();
            let response = service.oneshot(request).await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{method} {path}");
            let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&bytes);
            assert!(text.contains(body), "{method} {path}: {text}");
        }
    }
}
