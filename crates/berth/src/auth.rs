//! HTTP Basic authentication of every MCP route.
//!
//! The layer answers `401` with a `Basic` challenge (never a `Bearer` one: OAuth-capable clients
//! would start a login flow berth does not offer), logs each failed attempt without the
//! password, and removes the client's `Authorization` header, checked or not, so that no
//! backend ever sees it.
//!
//! It is tower-http's `AsyncRequireAuthorization` with [`Authenticator`] as the authorizer, not
//! tower-http's own Basic check, which is deprecated, compares in variable time and prints the
//! credential in `Debug`.

mod bounded;
mod throttle;
pub(crate) mod tokens;
mod users;

use std::sync::Arc;

use arc_swap::ArcSwap;

use base64::Engine;
use futures::future::{BoxFuture, Either, Ready, ready};
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_http::auth::{AsyncAuthorizeRequest, AsyncRequireAuthorizationLayer};

pub(crate) use throttle::Throttle;
pub(crate) use tokens::Tokens;
pub(crate) use users::{Users, hash_password};

use throttle::Admission;
use tokens::TokenRefusal;

use crate::{
    body::ResponseBody,
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
        /// The users, replaced whole when they are reloaded.
        users: Arc<ArcSwap<Users>>,
        /// The `WWW-Authenticate` header sent with every 401.
        challenge: HeaderValue,
        /// Where refusals are reported (metrics, audit), and for which listener.
        report: Option<(&'static str, Arc<dyn LoginReport>)>,
        /// The failed-login throttle, shared by every listener of the gateway.
        throttle: Option<Arc<Throttle>>,
        /// The API tokens accepted as `Bearer` credentials (none on the admin listener),
        /// replaced whole when they are reloaded.
        tokens: Arc<ArcSwap<Tokens>>,
    },
}

/// A request refused for its credentials, as reported to a [`LoginReport`].
#[derive(Debug)]
pub(crate) struct Refusal<'a> {
    /// `missing`, `malformed`, `wrong` or `throttled`.
    pub(crate) reason: &'static str,
    /// The status answered: `401`, or `429` when throttled.
    pub(crate) status: u16,
    /// The listener (`mcp`, `admin`).
    pub(crate) listener: &'static str,
    /// The client's address.
    pub(crate) client: Option<std::net::IpAddr>,
    /// The user name the credential gave, if it could be read.
    pub(crate) user: Option<&'a str>,
    /// The request's method.
    pub(crate) method: &'a str,
    /// The request's path.
    pub(crate) path: &'a str,
}

/// Told of every refused request, after it is logged: the seam through which metrics and the
/// audit log learn of refusals without this module knowing either.
pub(crate) trait LoginReport: Send + Sync + std::fmt::Debug {
    /// One refusal.
    fn refused(&self, refusal: &Refusal<'_>);
}

impl Authenticator {
    /// Basic authentication of `users` in `realm`, with failed logins throttled by `throttle`.
    pub(crate) fn basic(users: Arc<Users>, realm: &str, throttle: Option<Arc<Throttle>>) -> Self {
        let realm = realm.replace(['"', '\\'], "");
        let challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"berth\", charset=\"UTF-8\""));
        let (users, tokens) = (Arc::new(ArcSwap::new(users)), Arc::new(ArcSwap::from_pointee(Tokens::default())));
        Self::Basic { users, challenge, report: None, throttle, tokens }
    }

    /// The same check, accepting `tokens` as `Bearer` credentials too.
    pub(crate) fn with_tokens(self, tokens: Arc<Tokens>) -> Self {
        if let Self::Basic { tokens: cell, .. } = &self {
            cell.store(tokens);
        }
        self
    }

    /// Replaces the users, and the tokens when given, for every clone of this authenticator
    /// (requests already past the check keep the identity they were given).
    pub(crate) fn replace(&self, users: Arc<Users>, tokens: Option<Arc<Tokens>>) {
        if let Self::Basic { users: user_cell, tokens: token_cell, .. } = self {
            user_cell.store(users);
            if let Some(tokens) = tokens {
                token_cell.store(tokens);
            }
        }
    }

    /// The tokens, when credentials are checked.
    pub(crate) fn tokens(&self) -> Option<Arc<Tokens>> {
        match self {
            Self::None => None,
            Self::Basic { tokens, .. } => Some(tokens.load_full()),
        }
    }

    /// The same check, reporting refusals on `listener` to `report`.
    pub(crate) fn reporting(self, listener: &'static str, to: Arc<dyn LoginReport>) -> Self {
        match self {
            Self::None => Self::None,
            Self::Basic { users, challenge, throttle, tokens, .. } => {
                Self::Basic { users, challenge, report: Some((listener, to)), throttle, tokens }
            }
        }
    }

    /// The failed-login throttle, when credentials are checked and throttling is on.
    pub(crate) fn throttle(&self) -> Option<&Arc<Throttle>> {
        match self {
            Self::None => None,
            Self::Basic { throttle, .. } => throttle.as_ref(),
        }
    }

    /// The users, when credentials are checked.
    pub(crate) fn users(&self) -> Option<Arc<Users>> {
        match self {
            Self::None => None,
            Self::Basic { users, .. } => Some(users.load_full()),
        }
    }
}

/// Reports a refusal of `request`, if anybody listens.
fn report<B>(
    report: Option<&(&'static str, Arc<dyn LoginReport>)>,
    request: &Request<B>,
    reason: &'static str,
    user: Option<&str>,
) {
    if let Some((listener, to)) = report {
        to.refused(&Refusal {
            reason,
            status: if reason == "throttled" { 429 } else { 401 },
            listener,
            client: request.extensions().get::<ClientAddr>().map(|c| c.0.ip()),
            user,
            method: request.method().as_str(),
            path: request.uri().path(),
        });
    }
}

/// The token of a `Bearer` credential.
fn bearer(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks a bearer token: the request passed on as the token's identity, or the `401`.
#[allow(clippy::result_large_err)] // The error is the answer itself, as the authorizer wants it.
fn check_token<B>(
    tokens: &Tokens,
    presented: &str,
    mut request: Request<B>,
    challenge: &HeaderValue,
    reporter: Option<&(&'static str, Arc<dyn LoginReport>)>,
) -> Authorized<B> {
    match tokens.verify(presented, std::time::SystemTime::now()) {
        Ok(identity) => {
            request.extensions_mut().insert(AuthenticatedUser(identity));
            Ok(request)
        }
        Err(TokenRefusal::Expired(identity)) => {
            tracing::warn!(client = client(&request), user = &*identity, "failed login: expired token");
            report(reporter, &request, "expired", Some(&identity));
            Err(unauthorized(challenge, "this token has expired"))
        }
        Err(TokenRefusal::Unknown) => {
            tracing::warn!(client = client(&request), path = request.uri().path(), "failed login: unknown token");
            report(reporter, &request, "wrong", None);
            Err(unauthorized(challenge, "unknown token"))
        }
    }
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

/// The client address for failure logs, `-` when the server recorded none.
fn client<B>(request: &Request<B>) -> String {
    request.extensions().get::<ClientAddr>().map_or_else(|| "-".to_string(), |c| c.0.ip().to_string())
}

/// What [`Authenticator`] answers: the request, passed on, or the `401`.
type Authorized<B> = Result<Request<B>, Response<ResponseBody>>;

/// The answer comes at once when there is no password to check, and is boxed when there is
/// (bcrypt runs on the blocking pool).
type AuthorizeFuture<B> = Either<Ready<Authorized<B>>, BoxFuture<'static, Authorized<B>>>;

/// Basic authentication as tower-http's asynchronous authorizer: verifying a bcrypt hash is
/// asynchronous, so it cannot be a synchronous [`ValidateRequest`] check.
///
/// [`ValidateRequest`]: tower_http::validate_request::ValidateRequest
impl<B: Send + 'static> AsyncAuthorizeRequest<B> for Authenticator {
    type RequestBody = B;
    type ResponseBody = ResponseBody;
    type Future = AuthorizeFuture<B>;

    fn authorize(&mut self, mut request: Request<B>) -> Self::Future {
        // Removed first, whatever follows, so that no backend ever sees the client's
        // credential, even with `auth = "none"`.
        // Two credentials are one too many: which of them a proxy in front checked is anybody's
        // guess, so neither is tried.
        let several = request.headers().get_all(header::AUTHORIZATION).iter().nth(1).is_some();
        let credential = request.headers_mut().remove(header::AUTHORIZATION);
        let (users, challenge, reporter, throttle, tokens) = match self {
            Authenticator::None => return Either::Left(ready(Ok(request))),
            Authenticator::Basic { users, challenge, report, throttle, tokens } => {
                (users, challenge, report, throttle, tokens)
            }
        };
        // Client and path are for the failure logs only: an accepted request (every request,
        // in the steady state) formats nothing.
        let Some(credential) = credential else {
            tracing::debug!(client = client(&request), path = request.uri().path(), "request without credentials");
            report(reporter.as_ref(), &request, "missing", None);
            return Either::Left(ready(Err(unauthorized(challenge, "authentication required"))));
        };
        if let Some(presented) = bearer(&credential).filter(|_| !several) {
            let tokens = tokens.load();
            return Either::Left(ready(check_token(&tokens, presented, request, challenge, reporter.as_ref())));
        }
        let Some((name, password)) = parse_basic(&credential).filter(|_| !several) else {
            tracing::warn!(
                client = client(&request),
                path = request.uri().path(),
                "failed login: malformed Authorization header"
            );
            report(reporter.as_ref(), &request, "malformed", None);
            return Either::Left(ready(Err(unauthorized(challenge, "expected HTTP Basic credentials"))));
        };
        let client_ip = request.extensions().get::<ClientAddr>().map(|c| c.0.ip());
        let admission = throttle.as_ref().map(|throttle| throttle.admit(client_ip, &name));
        if let Some(Admission::Refused(wait)) = admission {
            tracing::warn!(
                client = client(&request),
                user = name,
                path = request.uri().path(),
                retry_after_s = wait.as_secs_f64().ceil(),
                "failed login throttled: too many failures from this address or for this user"
            );
            report(reporter.as_ref(), &request, "throttled", Some(&name));
            return Either::Left(ready(Err(throttled(wait))));
        }
        let (users, challenge, reporter, throttle) =
            (users.load_full(), challenge.clone(), reporter.clone(), throttle.clone());
        Either::Right(Box::pin(async move {
            let user = users.verify(&name, &password).await;
            if let (Some(throttle), Some(admission)) = (&throttle, admission) {
                throttle.outcome(client_ip, &name, admission, user.is_some());
            }
            match user {
                Some(user) => {
                    request.extensions_mut().insert(AuthenticatedUser(user));
                    Ok(request)
                }
                None => {
                    tracing::warn!(
                        client = client(&request),
                        user = name,
                        path = request.uri().path(),
                        "failed login: wrong user name or password"
                    );
                    report(reporter.as_ref(), &request, "wrong", Some(&name));
                    Err(unauthorized(&challenge, "wrong user name or password"))
                }
            }
        }))
    }
}

/// The `429` of a throttled login: no challenge (the client is not asked to try again now),
/// `Retry-After` in whole seconds, at least one.
fn throttled(wait: std::time::Duration) -> Response<ResponseBody> {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = Rejection::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failed_logins",
        format!("too many failed logins from this address or for this user; retry after {seconds} s"),
    )
    .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The layer that authenticates every request with `authenticator`: `401` with a Basic
/// challenge, or the request passed on with its [`AuthenticatedUser`] and without its
/// `Authorization` header.
pub(crate) fn layer(authenticator: Authenticator) -> AsyncRequireAuthorizationLayer<Authenticator> {
    AsyncRequireAuthorizationLayer::new(authenticator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        body::{RequestBody, request_body, response_body},
        secret::Secret,
    };
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    async fn call(authenticator: Authenticator, authorization: Option<&str>) -> Response<ResponseBody> {
        let service = ServiceBuilder::new().layer(layer(authenticator)).service(service_fn(
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
        let auth = Authenticator::basic(users, "berth", None);
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
            } else {
                // The backend learns who the user is from the extension, not the header.
                let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
                assert_eq!(bytes, "alice");
            }
        }
    }

    #[tokio::test]
    async fn no_auth_still_strips_the_header() {
        let response = call(Authenticator::None, Some("Basic Zm9vOmJhcg==")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}
