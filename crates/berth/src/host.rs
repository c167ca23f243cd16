//! `Host` and `Origin` validation (DNS-rebinding and cross-site protection).
//!
//! rmcp's own check only accepts loopback hosts, which rejects every request that arrives
//! through a reverse proxy, so berth disables it and applies this layer instead: the hosts come
//! from `server.public_hosts` (with `*.suffix` wildcards) and `server.base_domain`, and a
//! browser `Origin` must name one of those hosts, the request's own host, or an origin listed in
//! `server.allowed_origins`.

use std::sync::Arc;

use http::{HeaderMap, Request, Response, StatusCode, Uri, header};
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use crate::{body::ResponseBody, reply::Rejection};

/// One allowed host name: `mcp.example.com` or `*.mcp.example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    /// The lower-case name, without the `*.` of a wildcard.
    name: String,
    wildcard: bool,
}

impl HostPattern {
    /// Parses a pattern; a port, if written, is ignored (ports change behind proxies).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (wildcard, rest) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let name = strip_port(rest);
        let valid = !name.is_empty()
            && name
                .split('.')
                .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            || name.parse::<std::net::IpAddr>().is_ok()
            || name.starts_with('[') && name.ends_with(']');
        if !valid {
            return Err(format!("`{text}` is not a host name such as mcp.example.com or *.mcp.example.com"));
        }
        Ok(Self { name: name.to_string(), wildcard })
    }

    /// `localhost`, the one name an open gateway without public hosts answers to.
    pub(crate) fn localhost() -> Self {
        Self { name: "localhost".to_string(), wildcard: false }
    }

    /// Whether this pattern is `*.something`.
    pub(crate) fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Whether `host` (lower case, no port) matches.
    pub(crate) fn matches(&self, host: &str) -> bool {
        if self.wildcard {
            host.len() > self.name.len() + 1
                && host.ends_with(self.name.as_str())
                && host.as_bytes()[host.len() - self.name.len() - 1] == b'.'
        } else {
            host == self.name
        }
    }
}

/// `server.base_domain`: the domain below which each backend has a host name of its own
/// (`fs.mcp.example.com/mcp` reaches backend `fs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseDomain(HostPattern);

impl BaseDomain {
    /// Parses a domain name; a wildcard is refused, since the backend's name takes its place.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        HostPattern::parse(text)
            .ok()
            .filter(|pattern| !pattern.is_wildcard())
            .map(Self)
            .ok_or_else(|| format!("`{text}` is not a domain name such as mcp.example.com"))
    }

    /// The lower-case name, without port.
    pub(crate) fn name(&self) -> &str {
        &self.0.name
    }

    /// The hosts it makes allowed: the domain itself and every name below it.
    pub(crate) fn host_patterns(&self) -> [HostPattern; 2] {
        [self.0.clone(), HostPattern { name: self.0.name.clone(), wildcard: true }]
    }
}

/// The `(scheme, host, port)` of an origin such as `https://app.example.com:8443`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

/// Parses an `Origin` header value or a configured origin.
pub(crate) fn parse_origin(text: &str) -> Option<Origin> {
    let uri: Uri = text.trim().parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    if uri.path() != "/" && !uri.path().is_empty() {
        return None;
    }
    Some(Origin {
        scheme,
        host: authority.host().trim_matches(['[', ']']).to_ascii_lowercase(),
        port: authority.port_u16(),
    })
}

impl Origin {
    /// Whether this origin is the `authority` (a `Host` header: host and port) a request was
    /// sent to: the same host and the same port, a missing port being the scheme's default.
    pub(crate) fn is_authority(&self, authority: &str) -> bool {
        let Ok(authority) = authority.parse::<http::uri::Authority>() else { return false };
        let default = match self.scheme.as_str() {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        };
        authority.host().trim_matches(['[', ']']).eq_ignore_ascii_case(&self.host)
            && authority.port_u16().or(default) == self.port.or(default)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal: `[::1]:8080`.
        return host.split_once(']').map_or(host, |(inside, _)| &inside[1..]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The host a request was addressed to (lower case, without port), from `Host` or, for HTTP/2,
/// the `:authority` pseudo-header.
pub(crate) fn request_host<B>(request: &Request<B>) -> Option<String> {
    let raw = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))?;
    Some(strip_port(&raw).to_ascii_lowercase())
}

/// The allow-lists, shared by every request.
#[derive(Debug, Default)]
pub(crate) struct HostPolicy {
    hosts: Vec<HostPattern>,
    origins: Vec<Origin>,
}

const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

impl HostPolicy {
    /// Builds the policy; an empty `hosts` list accepts every `Host`.
    pub(crate) fn new(hosts: Vec<HostPattern>, origins: Vec<Origin>) -> Self {
        Self { hosts, origins }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.hosts.is_empty() || LOOPBACK.contains(&host) || self.hosts.iter().any(|p| p.matches(host))
    }

    fn origin_allowed(&self, origin: &Origin, request_host: Option<&str>) -> bool {
        request_host == Some(origin.host.as_str())
            || (!self.hosts.is_empty() && self.hosts.iter().any(|p| p.matches(&origin.host)))
            || self.origins.iter().any(|allowed| {
                allowed.scheme == origin.scheme
                    && allowed.host == origin.host
                    && (allowed.port.is_none() || allowed.port == origin.port)
            })
    }

    /// Checks one request's headers.
    pub(crate) fn check(&self, host: Option<&str>, headers: &HeaderMap) -> Result<(), Rejection> {
        match host {
            Some(host) if self.host_allowed(host) => {}
            Some(host) => {
                return Err(Rejection::new(
                    StatusCode::FORBIDDEN,
                    "forbidden_host",
                    format!("host `{host}` is not served here (see server.public_hosts)"),
                ));
            }
            None if self.hosts.is_empty() => {}
            None => {
                return Err(Rejection::new(StatusCode::FORBIDDEN, "forbidden_host", "the request names no host"));
            }
        }
        if let Some(value) = headers.get(header::ORIGIN) {
            let text = value.to_str().unwrap_or("");
            let allowed = parse_origin(text).is_some_and(|origin| self.origin_allowed(&origin, host));
            if !allowed {
                return Err(Rejection::new(
                    StatusCode::FORBIDDEN,
                    "forbidden_origin",
                    format!("origin `{text}` is not allowed (see server.allowed_origins)"),
                ));
            }
        }
        Ok(())
    }
}

/// The [`ValidateRequest`] that applies a [`HostPolicy`].
#[derive(Debug, Clone)]
pub(crate) struct ValidateHost(Arc<HostPolicy>);

impl<B> ValidateRequest<B> for ValidateHost {
    type ResponseBody = ResponseBody;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<ResponseBody>> {
        let host = request_host(request);
        self.0.check(host.as_deref(), request.headers()).map_err(Rejection::into_response)
    }
}

/// The layer that refuses foreign `Host` and `Origin` headers with 403.
pub(crate) fn layer(policy: Arc<HostPolicy>) -> ValidateRequestHeaderLayer<ValidateHost> {
    ValidateRequestHeaderLayer::custom(ValidateHost(policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{RequestBody, ResponseBody, request_body, response_body};
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    fn policy(hosts: &[&str], origins: &[&str]) -> Arc<HostPolicy> {
        Arc::new(HostPolicy::new(
            hosts.iter().map(|h| HostPattern::parse(h).unwrap()).collect(),
            origins.iter().map(|o| parse_origin(o).unwrap()).collect(),
        ))
    }

    async fn status(policy: Arc<HostPolicy>, host: &str, origin: Option<&str>) -> u16 {
        let service = ServiceBuilder::new().layer(layer(policy)).service(service_fn(|_: Request<RequestBody>| async {
            Ok::<_, Infallible>(Response::new(response_body("")))
        }));
        let mut request = Request::builder().uri("/fs/mcp").header(header::HOST, host);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let response: Response<ResponseBody> = service.oneshot(request.body(request_body("")).unwrap()).await.unwrap();
        response.status().as_u16()
    }

    #[tokio::test]
    async fn hosts_and_origins() {
        let configured = policy(&["mcp.example.com", "*.mcp.example.com"], &["https://app.example.org"]);
        let table: &[(&Arc<HostPolicy>, &str, Option<&str>, u16)] = &[
            (&configured, "mcp.example.com", None, 200),
            (&configured, "MCP.Example.com:443", None, 200),
            (&configured, "fs.mcp.example.com", None, 200),
            (&configured, "a.b.mcp.example.com", None, 200),
            (&configured, "localhost:8080", None, 200),
            (&configured, "[::1]:8080", None, 200),
            (&configured, "evil.com", None, 403),
            (&configured, "xmcp.example.com", None, 403),
            (&configured, "fs.mcp.example.com", Some("https://fs.mcp.example.com"), 200),
            (&configured, "fs.mcp.example.com", Some("https://other.mcp.example.com"), 200),
            (&configured, "fs.mcp.example.com", Some("https://app.example.org"), 200),
            (&configured, "fs.mcp.example.com", Some("http://app.example.org"), 403),
            (&configured, "fs.mcp.example.com", Some("https://evil.com"), 403),
            (&configured, "fs.mcp.example.com", Some("null"), 403),
        ];
        for (policy, host, origin, expected) in table {
            assert_eq!(status(Arc::clone(policy), host, *origin).await, *expected, "{host} {origin:?}");
        }
        let open = policy(&[], &[]);
        assert_eq!(status(Arc::clone(&open), "anything.example", None).await, 200);
        assert_eq!(status(Arc::clone(&open), "berth.local:8080", Some("http://berth.local:8080")).await, 200);
        assert_eq!(status(open, "berth.local", Some("https://evil.com")).await, 403);
    }

    #[test]
    fn an_origin_is_the_authority_of_its_host_and_port() {
        let table = [
            ("http://127.0.0.1:9180", "127.0.0.1:9180", true),
            ("http://ADMIN.example", "admin.example", true),
            ("http://admin.example", "admin.example:80", true),
            ("https://admin.example:443", "admin.example", true),
            ("http://[::1]:9180", "[::1]:9180", true),
            ("http://127.0.0.1:9180", "127.0.0.1:9181", false),
            ("https://admin.example", "admin.example:80", false),
            ("http://evil.example", "admin.example", false),
            ("http://admin.example", "not a host", false),
        ];
        for (origin, authority, expected) in table {
            assert_eq!(parse_origin(origin).unwrap().is_authority(authority), expected, "{origin} {authority}");
        }
    }

    #[test]
    fn patterns() {
        assert!(HostPattern::parse("bad host").is_err());
        assert!(HostPattern::parse("*.").is_err());
        assert!(HostPattern::parse("mcp.example.com:8443").unwrap().matches("mcp.example.com"));
        assert!(HostPattern::parse("10.0.0.1").is_ok());
        assert!(BaseDomain::parse("*.mcp.example.com").is_err());
        let [domain, below] = BaseDomain::parse(" MCP.example.com:8443").unwrap().host_patterns();
        assert!(domain.matches("mcp.example.com") && !domain.matches("fs.mcp.example.com"));
        assert!(below.matches("fs.mcp.example.com") && !below.matches("mcp.example.com"));
    }
}
