//! The routes that answer without authentication, and only these.
//!
//! - `GET`/`HEAD /`: `{"status":"ok"}` for Docker, Traefik and Coolify health checks; it says
//!   nothing else about the gateway.
//! - `GET /readyz`: 200 when every backend marked `required` is ready, else 503 naming those
//!   that are not.
//! - `/.well-known/oauth-*`: 404, so that OAuth-capable clients learn at once that there is no
//!   authorization server here instead of meeting a 401 and starting a login flow.
//!
//! Everything else goes to the authenticated stack, so the exemption is visible in the
//! structure of the stack rather than hidden as a path test inside the auth code.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::{BoxFuture, Either, Ready, ready};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;
use tower::{Layer, Service};

use crate::{
    body::{RequestBody, ResponseBody, response_body},
    reply::{Rejection, json_response},
    route::Routes,
};

/// The layer for [`PublicRoutes`].
#[derive(Debug, Clone)]
pub(crate) struct PublicLayer {
    routes: Arc<Routes>,
}

impl PublicLayer {
    /// Public routes reporting on `routes`.
    pub(crate) fn new(routes: Arc<Routes>) -> Self {
        Self { routes }
    }
}

impl<S> Layer<S> for PublicLayer {
    type Service = PublicRoutes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PublicRoutes { inner, routes: Arc::clone(&self.routes) }
    }
}

/// Answers the public routes; passes every other request to `inner`.
#[derive(Debug, Clone)]
pub(crate) struct PublicRoutes<S> {
    inner: S,
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
    let mut waiting: Vec<&str> = routes
        .backends()
        .filter(|backend| backend.required() && !backend.is_ready())
        .map(|backend| backend.name())
        .collect();
    waiting.sort_unstable();
    if waiting.is_empty() {
        json_response(StatusCode::OK, &json!({"status": "ready"}))
    } else {
        json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "not_ready", "not_ready": waiting}))
    }
}

impl<S> Service<Request<RequestBody>> for PublicRoutes<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Either<
        Ready<Result<Response<ResponseBody>, Infallible>>,
        BoxFuture<'static, Result<Response<ResponseBody>, Infallible>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let path = request.uri().path();
        let method = request.method();
        let public = match (method, path) {
            (&Method::GET | &Method::HEAD, "/") => Some(health(method)),
            (&Method::GET | &Method::HEAD, "/readyz") => Some(readiness(&self.routes)),
            (_, path) if path.starts_with("/.well-known/oauth-") => Some(
                Rejection::new(StatusCode::NOT_FOUND, "not_found", "berth uses HTTP Basic authentication, not OAuth")
                    .into_response(),
            ),
            _ => None,
        };
        match public {
            Some(response) => Either::Left(ready(Ok(response))),
            None => Either::Right(Box::pin(self.inner.call(request))),
        }
    }
}
