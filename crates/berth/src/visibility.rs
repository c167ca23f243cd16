//! Which tools, prompts and resources an identity sees on a backend.
//!
//! `backends.<name>.tools = { allow = ["read_*"], deny = ["delete_*"] }`, the same for `prompts`
//! (by name) and `resources` (by URI; templates by their `uriTemplate`), and per group in
//! `[backends.<name>.access.<group>]`. An item is visible when it matches an `allow` pattern (or
//! there is no `allow`) and no `deny` pattern. An identity in groups that have an `access` table
//! sees what any of those tables shows; anyone else sees what the backend's own filters show.
//!
//! Enforced on the call and on the list, for every kind of backend: `tools/call`, `prompts/get`,
//! `resources/read` and `resources/subscribe` of a hidden item get the JSON-RPC error a server
//! gives for an unknown one, without reaching the backend; hidden items are removed from
//! `tools/list`, `prompts/list`, `resources/list` and `resources/templates/list` answers (each
//! page of a paginated list), JSON or SSE, on their way to the client.

mod filtered;

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::future::BoxFuture;
use globset::{GlobSet, GlobSetBuilder};
use http::{Request, Response, header};
use serde_json::Value;
use tower::{Layer, Service};

use crate::{
    access::Memberships,
    body::{RequestBody, ResponseBody},
    extensions::{AuthenticatedUser, ParsedBody, Target},
    jsonrpc::{self, INVALID_PARAMS, Kind, Message},
};

/// The error a server gives for a resource it does not have (MCP's `-32002`).
const RESOURCE_NOT_FOUND: i64 = -32002;

/// Allow and deny patterns over one kind of item.
#[derive(Debug, Clone, Default)]
pub(crate) struct Patterns {
    allow: Option<GlobSet>,
    deny: Option<GlobSet>,
}

/// Builds a set of glob patterns (`*` and `?` match any characters, `/` included).
fn glob_set(patterns: &[String]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|error| format!("`{pattern}`: {error}"))?;
        builder.add(glob);
    }
    builder.build().map_err(|error| error.to_string())
}

impl Patterns {
    /// The patterns of `allow` (all visible when `None`) and `deny`.
    pub(crate) fn new(allow: Option<&[String]>, deny: &[String]) -> Result<Self, String> {
        let allow = allow.map(glob_set).transpose()?;
        let deny = (!deny.is_empty()).then(|| glob_set(deny)).transpose()?;
        Ok(Self { allow, deny })
    }

    fn shows(&self, item: &str) -> bool {
        self.allow.as_ref().is_none_or(|allow| allow.is_match(item))
            && !self.deny.as_ref().is_some_and(|deny| deny.is_match(item))
    }
}

/// The filters of one view: tools, prompts, resources.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    pub(crate) tools: Patterns,
    pub(crate) prompts: Patterns,
    pub(crate) resources: Patterns,
}

/// The kinds of item a view filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    Tool,
    Prompt,
    Resource,
}

impl View {
    fn patterns(&self, item: Item) -> &Patterns {
        match item {
            Item::Tool => &self.tools,
            Item::Prompt => &self.prompts,
            Item::Resource => &self.resources,
        }
    }
}

/// A backend's views: its own, and those of groups with an `access` table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Visibility {
    /// What identities without a group view see.
    pub(crate) default: View,
    /// The views of `[backends.<name>.access.<group>]`.
    pub(crate) groups: BTreeMap<String, View>,
}

/// What one identity sees: the default view, or the union of its groups' views.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    views: Vec<View>,
}

impl Seen {
    /// Whether `item` named `name` (a URI for resources) is visible.
    pub(crate) fn shows(&self, item: Item, name: &str) -> bool {
        self.views.iter().any(|view| view.patterns(item).shows(name))
    }
}

impl Visibility {
    /// What `user` sees.
    fn seen_by(&self, user: Option<&str>, memberships: &Memberships) -> Seen {
        let groups: Vec<View> = match user {
            Some(user) => self
                .groups
                .iter()
                .filter(|(group, _)| memberships.is_member(user, group))
                .map(|(_, v)| v.clone())
                .collect(),
            None => Vec::new(),
        };
        Seen { views: if groups.is_empty() { vec![self.default.clone()] } else { groups } }
    }
}

/// The item a request names, if it is a call on one: the kind and the name or URI.
fn called(message: &Message) -> Option<(Item, String)> {
    let method = message.method()?;
    let (item, path): (Item, &[&str]) = match &*method {
        "tools/call" => (Item::Tool, &["params", "name"]),
        "prompts/get" => (Item::Prompt, &["params", "name"]),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => (Item::Resource, &["params", "uri"]),
        _ => return None,
    };
    Some((item, message.find_str(path)?.into_owned()))
}

/// The list a request asks for, if it is one: the result's array and the field of each entry
/// that names it.
pub(crate) fn listed(method: &str) -> Option<(Item, &'static str, &'static str)> {
    match method {
        "tools/list" => Some((Item::Tool, "tools", "name")),
        "prompts/list" => Some((Item::Prompt, "prompts", "name")),
        "resources/list" => Some((Item::Resource, "resources", "uri")),
        "resources/templates/list" => Some((Item::Resource, "resourceTemplates", "uriTemplate")),
        _ => None,
    }
}

/// The answer a server gives for an unknown item, to the request whose raw id is `id`.
fn unknown(item: Item, name: &str, id: &[u8]) -> Bytes {
    match item {
        Item::Tool => jsonrpc::error(id, INVALID_PARAMS, &format!("Unknown tool: {name}")),
        Item::Prompt => jsonrpc::error(id, INVALID_PARAMS, &format!("Unknown prompt: {name}")),
        Item::Resource => jsonrpc::error(id, RESOURCE_NOT_FOUND, &format!("Resource not found: {name}")),
    }
}

/// The layer of every backend's visibility, over the users' groups.
#[derive(Debug, Clone)]
pub(crate) struct VisibilityLayer(pub(crate) Arc<ArcSwap<Memberships>>);

impl<S> Layer<S> for VisibilityLayer {
    type Service = Visible<S>;

    fn layer(&self, inner: S) -> Visible<S> {
        Visible { inner, memberships: Arc::clone(&self.0) }
    }
}

/// The service of [`VisibilityLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Visible<S> {
    inner: S,
    memberships: Arc<ArcSwap<Memberships>>,
}

impl<S> Service<Request<RequestBody>> for Visible<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<ResponseBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let visibility = request.extensions().get::<Target>().and_then(|target| target.0.visibility().cloned());
        let (Some(visibility), Some(ParsedBody(body))) = (visibility, request.extensions().get::<ParsedBody>()) else {
            return Box::pin(inner.call(request));
        };
        let user = request.extensions().get::<AuthenticatedUser>().map(|user| Arc::clone(&user.0));
        let seen = visibility.seen_by(user.as_deref(), &self.memberships.load());
        let requests = body.messages().iter().filter(|message| message.kind() == Kind::Request);
        let mut lists = Vec::new();
        for message in requests {
            if let Some((item, name)) = called(message)
                && !seen.shows(item, &name)
            {
                let id = message.id_bytes().unwrap_or_else(|| Bytes::from_static(b"null"));
                tracing::debug!(item = ?item, name, "refused: hidden by the backend's visibility rules");
                let answer = unknown(item, &name, &id);
                let answer = if body.is_batch() {
                    Bytes::from(format!("[{}]", String::from_utf8_lossy(&answer)))
                } else {
                    answer
                };
                return Box::pin(async move { Ok(json(answer)) });
            }
            if let (Some(method), Some(id)) = (message.method(), message.id_bytes())
                && let Some(list) = listed(&method)
                && let Ok(id) = serde_json::from_slice::<Value>(&id)
            {
                lists.push((id, list));
            }
        }
        if lists.is_empty() {
            return Box::pin(inner.call(request));
        }
        Box::pin(async move {
            let response = inner.call(request).await?;
            let sse = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
            let (mut parts, body) = response.into_parts();
            // The filtered body is shorter: its length is no longer known in advance.
            parts.headers.remove(header::CONTENT_LENGTH);
            let filtered = filtered::Filtered::new(body, sse, lists, seen);
            Ok(Response::from_parts(parts, http_body_util::BodyExt::boxed(filtered)))
        })
    }
}

/// A 200 JSON answer.
fn json(body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(crate::body::response_body(body));
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(allow: Option<&[&str]>, deny: &[&str]) -> Patterns {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Patterns::new(allow.map(owned).as_deref(), &owned(deny)).unwrap()
    }

    #[test]
    fn allow_then_deny_with_globs_that_cross_slashes() {
        let tools = patterns(Some(&["read_*", "get-sum"]), &["read_secret*"]);
        for (name, shown) in [("read_file", true), ("get-sum", true), ("read_secret_key", false), ("echo", false)] {
            assert_eq!(tools.shows(name), shown, "{name}");
        }
        let resources = patterns(None, &["file:///private/*"]);
        assert!(resources.shows("file:///public/a/b.txt"));
        assert!(!resources.shows("file:///private/a/b.txt"), "`*` crosses `/`");
        assert!(Patterns::new(Some(&["[".to_string()]), &[]).is_err());
    }

    #[test]
    fn group_views_replace_the_default_and_add_up() {
        let view = |allow: &[&str]| View { tools: patterns(Some(allow), &[]), ..View::default() };
        let visibility = Visibility {
            default: view(&["add"]),
            groups: BTreeMap::from([("dev".to_string(), view(&["echo"])), ("ops".to_string(), view(&["restart"]))]),
        };
        let mut memberships = Memberships::default();
        memberships.add("alice", "dev");
        memberships.add("alice", "ops");
        memberships.add("bob", "dev");
        let seen = |user| visibility.seen_by(Some(user), &memberships);
        assert!(seen("carol").shows(Item::Tool, "add") && !seen("carol").shows(Item::Tool, "echo"));
        assert!(seen("bob").shows(Item::Tool, "echo") && !seen("bob").shows(Item::Tool, "add"));
        assert!(seen("alice").shows(Item::Tool, "echo") && seen("alice").shows(Item::Tool, "restart"));
    }
}
