//! Who may use which backend: `backends.<name>.allow = ["group:dev", "user:carol", "token:ci"]`.
//!
//! Groups come from `[[auth.users]] groups = [...]` and from `[auth.groups] dev = ["alice"]`
//! (the way to give groups to users of the environment or an htpasswd file), and from
//! `[[auth.tokens]] groups` for API tokens (identity `token:<name>`). A backend without
//! `allow` is open to every authenticated identity. An identity the list does not admit gets
//! `403` with a JSON-RPC error carrying its request's id (`null` for a `GET` or `DELETE`), on
//! every kind of backend and both protocol generations.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use arc_swap::ArcSwap;
use http::{Request, Response, StatusCode};
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use crate::{
    body::ResponseBody,
    extensions::{AuthenticatedUser, ParsedBody, Target},
    reply::Rejection,
};

/// One entry of an `allow` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// `user:<name>`.
    User(String),
    /// `group:<name>`.
    Group(String),
    /// `token:<name>`: an API token of `[[auth.tokens]]`.
    Token(String),
}

impl Principal {
    /// Parses `user:carol` or `group:dev`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some(("user", name)) if !name.is_empty() => Ok(Self::User(name.to_string())),
            Some(("group", name)) if !name.is_empty() => Ok(Self::Group(name.to_string())),
            Some(("token", name)) if !name.is_empty() => Ok(Self::Token(name.to_string())),
            _ => Err(format!("`{text}` is not `user:<name>`, `group:<name>` or `token:<name>`")),
        }
    }
}

/// A backend's `allow` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allow(Vec<Principal>);

impl Allow {
    /// The list of `principals`; validation refuses an empty one, which would admit nobody.
    pub(crate) fn new(principals: Vec<Principal>) -> Self {
        Self(principals)
    }

    /// The entries.
    pub(crate) fn principals(&self) -> &[Principal] {
        &self.0
    }

    /// Whether `user` is admitted, by name or by one of its groups.
    fn admits(&self, user: &str, memberships: &Memberships) -> bool {
        self.0.iter().any(|principal| match principal {
            Principal::User(name) => name == user,
            Principal::Group(group) => memberships.is_member(user, group),
            Principal::Token(name) => user.strip_prefix("token:") == Some(name.as_str()),
        })
    }
}

/// The groups of every user.
#[derive(Debug, Default)]
pub(crate) struct Memberships {
    groups: HashMap<String, BTreeSet<String>>,
}

impl Memberships {
    /// Puts `user` in `group`.
    pub(crate) fn add(&mut self, user: &str, group: &str) {
        self.groups.entry(user.to_string()).or_default().insert(group.to_string());
    }

    /// Whether `group` has any member.
    pub(crate) fn has_group(&self, group: &str) -> bool {
        self.groups.values().any(|groups| groups.contains(group))
    }

    /// Whether `user` is in `group`.
    pub(crate) fn is_member(&self, user: &str, group: &str) -> bool {
        self.groups.get(user).is_some_and(|groups| groups.contains(group))
    }
}

/// The check of the routed backend's `allow`, below the transport checks (the refusal carries
/// the request id they parsed).
#[derive(Debug, Clone)]
pub(crate) struct BackendAccess(Arc<ArcSwap<Memberships>>);

impl<B> ValidateRequest<B> for BackendAccess {
    type ResponseBody = ResponseBody;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<ResponseBody>> {
        let Some(Target(backend)) = request.extensions().get::<Target>() else { return Ok(()) };
        let Some(allow) = backend.allow() else { return Ok(()) };
        // Without an identity (`auth = "none"`) validation refuses an `allow`, so none is
        // admitted here: fail closed.
        let user = request.extensions().get::<AuthenticatedUser>().map(|user| &*user.0);
        if user.is_some_and(|user| allow.admits(user, &self.0.load())) {
            return Ok(());
        }
        tracing::warn!(
            user = user.unwrap_or("-"),
            backend = backend.name(),
            "refused: not in the backend's allow list"
        );
        let id = request.extensions().get::<ParsedBody>().and_then(|body| body.0.messages().first()?.id_bytes());
        let message = format!("you may not use backend `{}`", backend.name());
        let rejection = Rejection::new(StatusCode::FORBIDDEN, "forbidden_backend", message)
            .with_raw_id(id.unwrap_or_else(|| bytes::Bytes::from_static(b"null")));
        Err(rejection.into_response())
    }
}

/// The layer of every backend's `allow`, over the users' `memberships` (replaced whole when
/// they are reloaded).
pub(crate) fn layer(memberships: Arc<ArcSwap<Memberships>>) -> ValidateRequestHeaderLayer<BackendAccess> {
    ValidateRequestHeaderLayer::custom(BackendAccess(memberships))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_parse_and_admit_by_name_or_group() {
        assert_eq!(Principal::parse("user:carol"), Ok(Principal::User("carol".into())));
        assert_eq!(Principal::parse("group:dev"), Ok(Principal::Group("dev".into())));
        assert_eq!(Principal::parse("token:ci"), Ok(Principal::Token("ci".into())));
        for bad in ["carol", "user:", "role:x", "token:", ":x"] {
            assert!(Principal::parse(bad).is_err(), "{bad}");
        }
        let mut memberships = Memberships::default();
        memberships.add("alice", "dev");
        let allow = Allow::new(vec![Principal::Group("dev".into()), Principal::User("carol".into())]);
        assert!(allow.admits("alice", &memberships));
        assert!(allow.admits("carol", &memberships));
        assert!(!allow.admits("bob", &memberships));
        assert!(!allow.admits("dev", &memberships), "a group name is not a user name");
        let tokens = Allow::new(vec![Principal::Token("ci".into())]);
        assert!(tokens.admits("token:ci", &memberships));
        assert!(!tokens.admits("ci", &memberships), "a user named like a token is not the token");
    }
}
