//! `X-Forwarded-*` headers, believed only from trusted proxies.
//!
//! Behind Traefik or nginx, the peer of every connection is the proxy: the client's address is
//! in `X-Forwarded-For`, the scheme it used in `X-Forwarded-Proto`, and the host it asked for in
//! `X-Forwarded-Host` (Traefik also passes the original `Host` itself; nginx does so only with
//! `proxy_set_header Host $host`). Anybody can send those headers, so berth believes them only
//! from the peers listed in `server.trusted_proxies`:
//!
//! - from a trusted peer, the client address becomes the rightmost `X-Forwarded-For` entry that
//!   is not itself a trusted proxy (entries further left were written by the client and prove
//!   nothing), and `X-Forwarded-Host` replaces `Host`, so that host checks and host routing see
//!   the name the client used even when the proxy rewrote `Host`;
//! - from any other peer, every `X-Forwarded-*`, `X-Real-IP` and `Forwarded` header is removed,
//!   so that neither berth's later layers nor a backend can be fooled by them.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use http::{HeaderName, HeaderValue, Request, header};
use tower::util::MapRequestLayer;

use crate::{body::RequestBody, extensions::ClientAddr, ip_block::IpBlock};

/// The proxies whose `X-Forwarded-*` headers berth believes.
#[derive(Debug, Default)]
pub(crate) struct TrustedProxies(Vec<IpBlock>);

impl TrustedProxies {
    /// The proxies in `nets`; an empty list trusts nobody.
    pub(crate) fn new(nets: Vec<IpBlock>) -> Self {
        Self(nets)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// Applies the rules of this module to one request.
    fn resolve(&self, mut request: Request<RequestBody>) -> Request<RequestBody> {
        let peer = request.extensions().get::<ClientAddr>().map(|client| client.0);
        let Some(peer) = peer.filter(|peer| self.trusts(peer.ip())) else {
            for name in FORWARDING_HEADERS {
                request.headers_mut().remove(name);
            }
            return request;
        };
        let headers = request.headers();
        // Every X-Forwarded-For line, in order, as one list: the proxy nearest berth appended last.
        let chain: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer.ip();
        for entry in chain.iter().rev() {
            let Ok(ip) = entry.parse::<IpAddr>() else { break };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        let host = headers
            .get(X_FORWARDED_HOST)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .and_then(|value| HeaderValue::from_str(value).ok());
        if let Some(host) = host {
            request.headers_mut().insert(header::HOST, host);
        }
        request.extensions_mut().insert(ClientAddr(SocketAddr::new(client, peer.port())));
        request
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What an untrusted peer may not say about the client.
const FORWARDING_HEADERS: [HeaderName; 7] = [
    X_FORWARDED_FOR,
    X_FORWARDED_HOST,
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-real-ip"),
    header::FORWARDED,
];

/// The layer applying `trusted` to every request.
pub(crate) fn layer(
    trusted: Arc<TrustedProxies>,
) -> MapRequestLayer<impl Fn(Request<RequestBody>) -> Request<RequestBody> + Clone> {
    MapRequestLayer::new(move |request| trusted.resolve(request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{ResponseBody, request_body, response_body};
    use http::Response;
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    /// Sends a request from `peer` and returns what the next layer saw: client address, Host,
    /// and the X-Forwarded-For it was given.
    async fn seen(trusted: &[&str], peer: &str, headers: &[(&str, &str)]) -> (String, String, String) {
        let trusted = Arc::new(TrustedProxies::new(trusted.iter().map(|t| IpBlock::parse(t).unwrap()).collect()));
        let service = ServiceBuilder::new().layer(layer(trusted)).service(service_fn(
            |request: Request<RequestBody>| async move {
                let client = request.extensions().get::<ClientAddr>().unwrap().0.ip().to_string();
                let get = |name: &str| {
                    request.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
                };
                let seen = format!("{client}|{}|{}", get("host"), get("x-forwarded-for"));
                Ok::<_, Infallible>(Response::new(response_body(seen)))
            },
        ));
        let mut request = Request::builder().uri("/mcp").header("host", "berth.internal:8080");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(request_body("")).unwrap();
        request.extensions_mut().insert(ClientAddr(peer.parse().unwrap()));
        let response: Response<ResponseBody> = service.oneshot(request).await.unwrap();
        let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let mut parts = text.split('|').map(str::to_string);
        (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
    }

    /// Trusted blocks, the peer, the forwarded headers it sends, and what berth must make of
    /// them: (client address, host, X-Forwarded-For passed on).
    type Case<'a> = (&'a [&'a str], &'a str, &'a [(&'a str, &'a str)], (&'a str, &'a str, &'a str));

    #[tokio::test]
    async fn only_trusted_peers_speak_for_the_client() {
        let xff = ("x-forwarded-for", "198.51.100.9, 203.0.113.7");
        let xfh = ("x-forwarded-host", "fs.mcp.example.com");
        let table: &[Case] = &[
            // A trusted proxy: the rightmost untrusted address is the client; its host counts.
            (&["10.0.0.0/8"], "10.1.2.3:5000", &[xff, xfh], ("203.0.113.7", "fs.mcp.example.com", xff.1)),
            // A chain of trusted proxies is walked through.
            (
                &["10.0.0.0/8"],
                "10.1.2.3:5000",
                &[("x-forwarded-for", "203.0.113.7, 10.9.9.9")],
                ("203.0.113.7", "berth.internal:8080", "203.0.113.7, 10.9.9.9"),
            ),
            // Without X-Forwarded-For, the proxy itself is the client.
            (&["10.0.0.1"], "10.0.0.1:5000", &[], ("10.0.0.1", "berth.internal:8080", "")),
            // An untrusted peer: everything it claims is ignored and removed.
            (&["10.0.0.0/8"], "192.0.2.1:5000", &[xff, xfh], ("192.0.2.1", "berth.internal:8080", "")),
            (&[], "127.0.0.1:5000", &[xff, xfh], ("127.0.0.1", "berth.internal:8080", "")),
            // IPv4-mapped peers match IPv4 blocks.
            (&["127.0.0.1"], "[::ffff:127.0.0.1]:5000", &[xff], ("203.0.113.7", "berth.internal:8080", xff.1)),
            // Garbage in the chain stops the walk at the last good address.
            (
                &["10.0.0.0/8"],
                "10.1.2.3:5000",
                &[("x-forwarded-for", "unknown")],
                ("10.1.2.3", "berth.internal:8080", "unknown"),
            ),
        ];
        for (trusted, peer, headers, (client, host, forwarded_for)) in table {
            let got = seen(trusted, peer, headers).await;
            assert_eq!(
                got,
                (client.to_string(), host.to_string(), forwarded_for.to_string()),
                "{trusted:?} {peer} {headers:?}"
            );
        }
    }
}
