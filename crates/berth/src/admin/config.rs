//! `POST /api/reload` and `GET /api/config`: the configuration, reloaded and shown.
//!
//! A layer in front of the rest of the API, below authentication: it answers these two paths
//! and hands every other request on.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::{Instant, SystemTime},
};

use futures::future::BoxFuture;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::json;
use tower::{Layer, Service};

use super::audit_request;
use crate::{
    body::{RequestBody, ResponseBody},
    gateway::{ReloadError, Reloader},
    observe::Observer,
    reply::{Rejection, json_response},
};

/// The layer that serves the configuration routes over `reloader`.
#[derive(Debug, Clone)]
pub(crate) struct ConfigLayer {
    pub(crate) reloader: Arc<Reloader>,
    pub(crate) observer: Observer,
}

impl<S> Layer<S> for ConfigLayer {
    type Service = ConfigApi<S>;

    fn layer(&self, inner: S) -> ConfigApi<S> {
        ConfigApi { inner, reloader: Arc::clone(&self.reloader), observer: self.observer.clone() }
    }
}

/// `POST /api/reload`, `GET /api/config`, then `inner`.
#[derive(Debug, Clone)]
pub(crate) struct ConfigApi<S> {
    inner: S,
    reloader: Arc<Reloader>,
    observer: Observer,
}

fn only(allowed: &'static str) -> Response<ResponseBody> {
    let mut response =
        Rejection::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("only {allowed} is served here"))
            .into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}

/// The answer to a reload: what it did, or why it changed nothing (`422` for an invalid file,
/// with its line and field; `409` when only a restart can apply it).
pub(crate) fn reload_answer(outcome: &Result<crate::gateway::Reloaded, ReloadError>) -> Response<ResponseBody> {
    match outcome {
        Ok(done) => json_response(StatusCode::OK, &json!({ "status": "reloaded", "reloaded": done })),
        Err(error) => {
            let status = match error {
                ReloadError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ReloadError::RestartNeeded { .. } => StatusCode::CONFLICT,
            };
            json_response(status, &error.details())
        }
    }
}

impl<S> Service<Request<RequestBody>> for ConfigApi<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let path = request.uri().path().trim_end_matches('/');
        let route = match path {
            "/api/reload" => Route::Reload,
            "/api/config" => Route::Config,
            _ => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                return Box::pin(inner.call(request));
            }
        };
        let (reloader, observer) = (Arc::clone(&self.reloader), self.observer.clone());
        Box::pin(async move {
            let (started, ts) = (Instant::now(), SystemTime::now());
            let response = match (route, request.method()) {
                (Route::Reload, &Method::POST) => {
                    let env = |name: &str| std::env::var(name).ok();
                    let outcome = reloader.reload(&env).await;
                    crate::gateway::log_reload("POST /api/reload", &outcome);
                    reload_answer(&outcome)
                }
                (Route::Reload, _) => only("POST"),
                (Route::Config, &Method::GET) => {
                    json_response(StatusCode::OK, &super::redact::config(&reloader.config()))
                }
                (Route::Config, _) => only("GET"),
            };
            audit_request(&observer, &request, None, response.status().as_u16(), started, ts);
            Ok(response)
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Route {
    Reload,
    Config,
}
