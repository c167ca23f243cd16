//! The routes that act through the [`Reloader`]: `POST /api/reload`, `GET /api/config` (the
//! configuration, reloaded and shown), `POST /api/backends/{name}/start|stop|restart` and
//! `POST /api/backends/{name}/call` (`call.rs`).
//!
//! A layer in front of the rest of the API, below authentication: it answers these paths and
//! hands every other request on.

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
    gateway::{Action, ActionError, ChangeError, ReloadError, Reloader},
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
        Err(error) => reload_error_answer(error),
    }
}

/// Why a reload changed nothing, as an answer.
fn reload_error_answer(error: &ReloadError) -> Response<ResponseBody> {
    let status = match error {
        ReloadError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadError::RestartNeeded { .. } => StatusCode::CONFLICT,
    };
    json_response(status, &error.details())
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
            _ if let Some((name, action)) = backend_action(path) => Route::Act(name.to_string(), action),
            _ if let Some(name) = backend_call(path) => Route::Call(name.to_string()),
            _ if let Some(name) = backend_path(path)
                && matches!(*request.method(), Method::PUT | Method::DELETE) =>
            {
                Route::Change(name.to_string())
            }
            _ => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                return Box::pin(inner.call(request));
            }
        };
        let (reloader, observer) = (Arc::clone(&self.reloader), self.observer.clone());
        Box::pin(async move {
            let (started, ts) = (Instant::now(), SystemTime::now());
            let env = |name: &str| std::env::var(name).ok();
            let (parts, body) = request.into_parts();
            let response = match (&route, &parts.method) {
                (Route::Reload, &Method::POST) => {
                    let outcome = reloader.reload(&env).await;
                    crate::gateway::log_reload("POST /api/reload", &outcome);
                    reload_answer(&outcome)
                }
                (Route::Reload, _) => only("POST"),
                (Route::Config, &Method::GET) => {
                    json_response(StatusCode::OK, &super::redact::config(&reloader.config()))
                }
                (Route::Config, _) => only("GET"),
                (Route::Act(name, action), &Method::POST) => match reloader.act(name, *action).await {
                    Ok(acted) => json_response(StatusCode::OK, &serde_json::to_value(acted).unwrap_or_default()),
                    Err(error @ ActionError::NotFound(_)) => {
                        Rejection::new(StatusCode::NOT_FOUND, "not_found", error.to_string()).into_response()
                    }
                    Err(error @ ActionError::Build(_)) => {
                        Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "action_failed", error.to_string())
                            .into_response()
                    }
                },
                (Route::Act(..), _) => only("POST"),
                (Route::Call(name), &Method::POST) => match reloader.routes.get(name) {
                    Some(backend) => super::call::call(backend, Request::from_parts(parts.clone(), body)).await,
                    None => Rejection::new(StatusCode::NOT_FOUND, "not_found", format!("no backend `{name}`"))
                        .into_response(),
                },
                (Route::Call(_), _) => only("POST"),
                (Route::Change(name), &Method::PUT) => {
                    let table = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, super::MAX_BODY))
                        .await
                        .ok()
                        .map(|collected| collected.to_bytes());
                    let outcome = match table.map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes)) {
                        Some(Ok(table)) => reloader.put_backend(name, table, &env).await,
                        Some(Err(error)) => Err(ChangeError::Body(format!("the body is not JSON: {error}"))),
                        None => Err(ChangeError::Body("the body is unreadable or larger than 1 MiB".into())),
                    };
                    change_answer(&outcome)
                }
                (Route::Change(name), _) => change_answer(&reloader.delete_backend(name, &env).await),
            };
            let backend = match &route {
                Route::Act(name, _) | Route::Call(name) | Route::Change(name) => Some(name.as_str()),
                _ => None,
            };
            let request = Request::from_parts(parts, crate::body::request_body(bytes::Bytes::new()));
            audit_request(&observer, &request, backend, response.status().as_u16(), started, ts);
            Ok(response)
        })
    }
}

#[derive(Debug, Clone)]
enum Route {
    Reload,
    Act(String, Action),
    Call(String),
    Change(String),
    Config,
}

/// `/api/backends/{name}/{action}`, when the path is one.
fn backend_action(path: &str) -> Option<(&str, Action)> {
    let (name, action) = path.strip_prefix("/api/backends/")?.split_once('/')?;
    Some((name, Action::parse(action)?)).filter(|(name, _)| !name.is_empty())
}

/// `/api/backends/{name}`, when the path is one.
fn backend_path(path: &str) -> Option<&str> {
    path.strip_prefix("/api/backends/").filter(|name| !name.is_empty() && !name.contains('/'))
}

/// The answer to a `PUT` or `DELETE` of a backend.
fn change_answer(outcome: &Result<crate::gateway::Changed, ChangeError>) -> Response<ResponseBody> {
    let error = match outcome {
        Ok(changed) => {
            let status = if changed.created { StatusCode::CREATED } else { StatusCode::OK };
            return json_response(status, &serde_json::to_value(changed).unwrap_or_default());
        }
        Err(error) => error,
    };
    let (status, slug) = match error {
        ChangeError::NoStateFile => (StatusCode::CONFLICT, "no_state_file"),
        ChangeError::Static(_) => (StatusCode::CONFLICT, "static_backend"),
        ChangeError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        ChangeError::Body(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
        ChangeError::Invalid(invalid) => {
            return json_response(StatusCode::UNPROCESSABLE_ENTITY, &crate::gateway::config_error_details(invalid));
        }
        ChangeError::Write { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "state_write_failed"),
        ChangeError::Reload(reload) => return reload_error_answer(reload),
    };
    Rejection::new(status, slug, error.to_string()).into_response()
}

/// `/api/backends/{name}/call`, when the path is one.
fn backend_call(path: &str) -> Option<&str> {
    path.strip_prefix("/api/backends/")?.strip_suffix("/call").filter(|name| !name.is_empty() && !name.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_actions_are_recognized_by_their_path() {
        assert_eq!(backend_action("/api/backends/fx/stop"), Some(("fx", Action::Stop)));
        assert_eq!(backend_action("/api/backends/fx/start"), Some(("fx", Action::Start)));
        assert_eq!(backend_action("/api/backends/fx/restart"), Some(("fx", Action::Restart)));
        assert_eq!(backend_action("/api/backends/fx/logs"), None);
        assert_eq!(backend_action("/api/backends//stop"), None);
        assert_eq!(backend_action("/api/backends/fx"), None);
        assert_eq!(backend_action("/api/backends/fx/stop/now"), None);
        assert_eq!(backend_call("/api/backends/fx/call"), Some("fx"));
        assert_eq!(backend_call("/api/backends//call"), None);
        assert_eq!(backend_call("/api/backends/a/b/call"), None);
    }
}
