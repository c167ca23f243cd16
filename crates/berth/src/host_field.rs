//! The `Host` field itself, before anything reads it: an HTTP/1.1 request must carry exactly
//! one, and it must be a host with an optional port (RFC 9112, section 3.2: "A server MUST
//! respond with a 400 (Bad Request) status code to any HTTP/1.1 request message that lacks a
//! Host header field and to any request message that contains more than one Host header field
//! line or a Host header field with an invalid field value").
//!
//! Two `Host` lines would let the host checks read one name while a proxy in front routed on
//! the other. HTTP/1.0 requests may lack it, and HTTP/2 ones name their host in `:authority`.

use http::{HeaderValue, Request, Response, StatusCode, Version, header, uri::Authority};
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use crate::{body::ResponseBody, reply::Rejection};

/// Why a request's `Host` field is refused, if it is.
fn problem<B>(request: &Request<B>) -> Option<&'static str> {
    let mut values = request.headers().get_all(header::HOST).iter();
    match (values.next(), values.next()) {
        (_, Some(_)) => Some("the request has more than one Host header"),
        (None, None) if request.version() == Version::HTTP_11 => Some("an HTTP/1.1 request must have a Host header"),
        (Some(value), None) if !valid(value) => Some("the Host header is not a host and optional port"),
        _ => None,
    }
}

/// Whether `value` is empty (allowed when the target has no authority) or `host[:port]`.
fn valid(value: &HeaderValue) -> bool {
    if value.is_empty() {
        return true;
    }
    let Ok(authority) = value.to_str().map(str::parse::<Authority>) else { return false };
    let Ok(authority) = authority else { return false };
    let port = authority.as_str().get(authority.host().len()..).unwrap_or_default();
    !authority.as_str().contains('@')
        && !authority.host().is_empty()
        && (port.is_empty() || port == ":" || authority.port_u16().is_some())
}

/// The [`ValidateRequest`] that answers a bad `Host` field with 400 `bad_host`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ValidateHostField;

impl<B> ValidateRequest<B> for ValidateHostField {
    type ResponseBody = ResponseBody;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<ResponseBody>> {
        match problem(request) {
            None => Ok(()),
            Some(reason) => Err(Rejection::new(StatusCode::BAD_REQUEST, "bad_host", reason).into_response()),
        }
    }
}

/// The layer that refuses requests without exactly one valid `Host` where one is owed.
pub(crate) fn layer() -> ValidateRequestHeaderLayer<ValidateHostField> {
    ValidateRequestHeaderLayer::custom(ValidateHostField)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_fields() {
        let table: &[(Version, &[&[u8]], bool)] = &[
            (Version::HTTP_11, &[b"berth.test"], true),
            (Version::HTTP_11, &[b"berth.test:8080"], true),
            (Version::HTTP_11, &[b"[::1]:8080"], true),
            (Version::HTTP_11, &[b""], true),
            (Version::HTTP_11, &[], false),
            (Version::HTTP_10, &[], true),
            (Version::HTTP_2, &[], true),
            (Version::HTTP_11, &[b"berth.test", b"evil.example"], false),
            (Version::HTTP_10, &[b"berth.test", b"berth.test"], false),
            (Version::HTTP_11, &[b"berth.test:99999999"], false),
            (Version::HTTP_11, &[b"alice@berth.test"], false),
            (Version::HTTP_11, &[b"berth.test/path"], false),
            (Version::HTTP_11, &[b"\xffberth"], false),
        ];
        for (version, hosts, ok) in table {
            let mut request = Request::builder().version(*version).uri("/");
            for host in *hosts {
                request = request.header(header::HOST, HeaderValue::from_bytes(host).unwrap());
            }
            let request = request.body(()).unwrap();
            assert_eq!(problem(&request).is_none(), *ok, "{version:?} {hosts:?}");
        }
    }
}
