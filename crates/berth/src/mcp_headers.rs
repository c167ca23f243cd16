//! The request headers of the 2026-07-28 protocol generation (SEP-2243, SEP-2575), checked
//! against the body for every backend: `Mcp-Method` must name the body's method, `Mcp-Name`
//! the tool, prompt, resource or task it addresses, and `MCP-Protocol-Version` must agree with
//! the version in the request's `_meta`.
//!
//! Proxies and load balancers route on these headers without reading the body; a request
//! whose headers say something else than its body would be routed one way and executed another,
//! so it is refused with 400 and JSON-RPC error -32020 before it reaches any backend.

use base64::Engine;
use http::HeaderMap;

use crate::jsonrpc::Message;

/// The `MCP-Protocol-Version` header.
pub(crate) const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";
/// The `Mcp-Session-Id` header of the session-based generation.
pub(crate) const SESSION_HEADER: &str = "mcp-session-id";
/// The first protocol version that has these headers.
pub(crate) const STANDARD_HEADERS_VERSION: &str = "2026-07-28";
/// The first stateless protocol version (no initialize, no session, no GET stream).
pub(crate) const STATELESS_VERSION: &str = "2026-07-28";

/// The first protocol version without JSON-RPC batches.
pub(crate) const NO_BATCHES_VERSION: &str = "2025-06-18";
/// Most messages in one batch, where the protocol version still allows batches.
pub(crate) const MAX_BATCH: usize = 32;
/// Why a batch is refused where the negotiated version does not allow batches.
pub(crate) const BATCH_REFUSED: &str =
    "JSON-RPC batches are not part of MCP since protocol version 2025-06-18: send one message per POST";

/// Whether a session of protocol `version` may send JSON-RPC batches (2025-03-26 only).
pub(crate) fn allows_batches(version: &str) -> bool {
    version < NO_BATCHES_VERSION
}

/// Whether `version` (a date-shaped protocol version) belongs to the stateless generation.
/// Versions are compared as strings, which orders ISO dates correctly.
pub(crate) fn is_stateless_version(version: &str) -> bool {
    version >= STATELESS_VERSION
}

/// The `MCP-Protocol-Version` header of a request, if present and readable.
pub(crate) fn protocol_version(headers: &HeaderMap) -> Option<&str> {
    headers.get(PROTOCOL_VERSION_HEADER).and_then(|v| v.to_str().ok())
}
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The body field that `Mcp-Name` must repeat, by method.
fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// The one value of a singleton header, or why it is unusable.
pub(crate) fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(format!("duplicate {name} header"));
    }
    value.to_str().map(|v| Some(v.trim())).map_err(|_| format!("{name} header contains invalid characters"))
}

/// Reverses the `=?base64?…?=` wrapping of values that cannot travel as plain header text.
pub(crate) fn decode(value: &str) -> Option<String> {
    match value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) {
        Some(inner) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(inner).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_string()),
    }
}

/// Checks one message against the headers; `Err` carries the reason for the -32020 error.
pub(crate) fn check(headers: &HeaderMap, message: &Message) -> Result<(), String> {
    let Ok(Some(version)) = single(headers, PROTOCOL_VERSION_HEADER) else {
        return Ok(());
    };
    if version < STANDARD_HEADERS_VERSION {
        return Ok(());
    }
    let Some(method) = message.method() else {
        return Ok(());
    };
    let method = &*method;
    match single(headers, "mcp-method")? {
        None if method == "initialize" => return Ok(()),
        None => return Err("missing required Mcp-Method header".to_string()),
        Some(value) if value != method => {
            return Err(format!("Mcp-Method header `{value}` does not match body method `{method}`"));
        }
        Some(_) => {}
    }
    if let Some(field) = name_field(method)
        && let Some(expected) = message.find_str(&["params", field])
    {
        let raw =
            single(headers, "mcp-name")?.ok_or_else(|| format!("missing required Mcp-Name header for `{method}`"))?;
        let decoded = decode(raw).ok_or_else(|| "Mcp-Name header is not valid Base64".to_string())?;
        if decoded != expected {
            return Err(format!("Mcp-Name header `{decoded}` does not match body value `{expected}`"));
        }
    }
    let meta_version = message.find_str(&["params", "_meta", META_PROTOCOL_VERSION]);
    if let Some(meta_version) = meta_version
        && *meta_version != *version
    {
        return Err(format!(
            "MCP-Protocol-Version header `{version}` does not match `{meta_version}` in the request's _meta"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: serde_json::Value) -> Message {
        Message::parse(bytes::Bytes::from(value.to_string())).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn headers_must_agree_with_the_body() {
        let call = json(serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}));
        let v = ("mcp-protocol-version", "2026-07-28");
        let table: &[(&[(&str, &str)], bool)] = &[
            (&[("mcp-protocol-version", "2025-11-25")], true),
            (&[v, ("mcp-method", "tools/call"), ("mcp-name", "echo")], true),
            (&[v, ("mcp-method", "tools/call"), ("mcp-name", " echo ")], true),
            (&[v, ("mcp-method", "tools/call"), ("mcp-name", "=?base64?ZWNobw==?=")], true),
            (&[v, ("mcp-method", "tools/call"), ("mcp-name", "=?base64?!!?=")], false),
            (&[v, ("mcp-method", "tools/call")], false),
            (&[v, ("mcp-method", "tools/call"), ("mcp-name", "Echo")], false),
            (&[v, ("mcp-method", "tools/list"), ("mcp-name", "echo")], false),
            (&[v, ("mcp-name", "echo")], false),
            (&[v, ("mcp-method", "tools/call"), ("mcp-method", "tools/call"), ("mcp-name", "echo")], false),
        ];
        for (pairs, ok) in table {
            assert_eq!(check(&headers(pairs), &call).is_ok(), *ok, "{pairs:?}");
        }
        let mismatch = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")];
        let old_meta = json(
            serde_json::json!({"jsonrpc":"2.0","method":"tools/list","id":1,"params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}),
        );
        assert!(check(&headers(&mismatch), &old_meta).is_err());
        let init = json(serde_json::json!({"jsonrpc":"2.0","method":"initialize","id":1,"params":{}}));
        assert!(check(&headers(&[v]), &init).is_ok());
    }
}
