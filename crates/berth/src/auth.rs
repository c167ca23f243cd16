//! HTTP Basic authentication of every MCP route.
//!
//! The layer answers `401` with a `Basic` challenge (never a `Bearer` one: OAuth-capable clients
//! would start a login flow berth does not offer), logs each failed attempt without the
//! password, and removes the client's `Authorization` header once it is checked so that no
//! backend ever sees it.

mod users;

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use base64::Engine;
use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::{Layer, Service};

pub(crate) use users::{Users, hash_password};

use crate::{
    body::{RequestBody, ResponseBody},
    extensions::{AuthenticatedUser, ClientAddr},
    reply::Rejection,
};

/// Who may pass.
#[derive(Debug, Clone)]
pub(crate) enum Authenticator {
    /// Everybody (`auth = "none"`).
    None,
    /// Users checked with HTTP Basic.
    Basic {
        /// The users.
        users: Arc<Users>,
        /// The `WWW-Authenticate` header sent with every 401.
        challenge: HeaderValue,
    },
}

impl Authenticator {
    /// Basic authentication of `users` in `realm`.
    pub(crate) fn basic(users: Arc<Users>, realm: &str) -> Self {
        let realm = realm.replace(['"', '\\'], "");
        let challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"berth\", charset=\"UTF-8\""));
        Self::Basic { users, challenge }
    }
}

/// The layer for [`Authenticate`].
#[derive(Debug, Clone)]
pub(crate) struct AuthLayer {
    authenticator: Authenticator,
}

impl AuthLayer {
    /// A layer applying `authenticator`.
    pub(crate) fn new(authenticator: Authenticator) -> Self {
        Self { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate { inner, authenticator: self.authenticator.clone() }
    }
}

/// The service that checks credentials before calling `inner`.
#[derive(Debug, Clone)]
pub(crate) struct Authenticate<S> {
    inner: S,
    authenticator: Authenticator,
}

/// Splits a `Basic` credential into user name and password.
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

fn unauthorized(challenge: &HeaderValue, message: &str) -> Response<ResponseBody> {
    let mut response = Rejection::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge.clone());
    response
}

impl<S> Service<Request<RequestBody>> for Authenticate<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        let credential = request.headers_mut().remove(header::AUTHORIZATION);
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let authenticator = self.authenticator.clone();
        Box::pin(async move {
            let (users, challenge) = match &authenticator {
                Authenticator::None => return inner.call(request).await,
                Authenticator::Basic { users, challenge } => (users, challenge),
            };
            // Client and path are for the failure logs only: an accepted request (every
            // request, in the steady state) formats nothing.
            let client = |request: &Request<RequestBody>| {
                request.extensions().get::<ClientAddr>().map_or_else(|| "-".to_string(), |c| c.0.ip().to_string())
            };
            let Some(credential) = credential else {
                tracing::debug!(client = client(&request), path = request.uri().path(), "request without credentials");
                return Ok(unauthorized(challenge, "authentication required"));
            };
            let Some((name, password)) = parse_basic(&credential) else {
                tracing::warn!(
                    client = client(&request),
                    path = request.uri().path(),
                    "failed login: malformed Authorization header"
                );
                return Ok(unauthorized(challenge, "expected HTTP Basic credentials"));
            };
            match users.verify(&name, &password).await {
                Some(user) => {
                    request.extensions_mut().insert(AuthenticatedUser(user));
                    inner.call(request).await
                }
                None => {
                    tracing::warn!(
                        client = client(&request),
                        user = name,
                        path = request.uri().path(),
                        "failed login: wrong user name or password"
                    );
                    Ok(unauthorized(challenge, "wrong user name or password"))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{body::request_body, body::response_body, secret::Secret};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    async fn call(authenticator: Authenticator, authorization: Option<&str>) -> Response<ResponseBody> {
        let service = ServiceBuilder::new().layer(AuthLayer::new(authenticator)).service(service_fn(
            |request: Request<RequestBody>| async move {
                // The backend must never see the client's credential.
                assert!(request.headers().get(header::AUTHORIZATION).is_none());
                let user = request.extensions().get::<AuthenticatedUser>().map(|u| u.0.to_string());
                Ok::<_, Infallible>(Response::new(response_body(user.unwrap_or_default())))
            },
        ));
        let mut request = Request::builder().uri("/fs/mcp");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        service.oneshot(request.body(request_body("")).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn basic_auth_statuses() {
        let users = Arc::new(Users::builder().plain("alice", &Secret::new("pw")).build(16));
        let auth = Authenticator::basic(users, "berth");
        let good = basic("alice", "pw");
        let wrong = basic("alice", "nope");
        let table: &[(Option<&str>, u16)] = &[
            (None, 401),
            (Some(good.as_str()), 200),
            (Some(wrong.as_str()), 401),
            (Some("Bearer abc"), 401),
            (Some("Basic !!!notbase64"), 401),
            (Some("Basic YWxpY2U="), 401),
        ];
        for (authorization, expected) in table {
            let response = call(auth.clone(), *authorization).await;
            assert_eq!(response.status().as_u16(), *expected, "{authorization:?}");
            if *expected == 401 {
                assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"berth\", charset=\"UTF-8\"");
            }
        }
    }

    #[tokio::test]
    async fn no_auth_still_strips_the_header() {
        let response = call(Authenticator::None, Some("Basic Zm9vOmJhcg==")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}
