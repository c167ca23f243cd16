//! A JSON-RPC message kept as the bytes it arrived in.
//!
//! berth routes messages by a handful of members (`id`, `method`, a progress token, a
//! subscription id) and must pass everything else through unchanged, fields and methods it does
//! not know included. So a message is not parsed into a tree: [`Message::parse`] checks that the
//! bytes are one well-formed JSON-RPC 2.0 envelope and records where the members berth routes on
//! sit, and [`Message::splice`] writes a copy with some of those values replaced. Every other
//! byte goes out as it came: ids larger than any integer type, floats, unknown members, their
//! order and their spelling survive the trip.
//!
//! Replacing a value is done by byte range, so it cannot fail on a message whose shape is not
//! what berth expected (a `params` that is a string, say): a member that is not there is simply
//! not found. This is what makes hostile input unable to panic the relay.

use std::{borrow::Cow, fmt, ops::Range};

use bytes::{Bytes, BytesMut};
use serde::{
    Deserialize, Deserializer,
    de::{self, IgnoredAny, MapAccess, Visitor},
};
use serde_json::value::RawValue;

use super::Kind;

/// Where a value sits in a message's bytes.
pub(crate) type Span = Range<usize>;

/// One JSON-RPC message, validated, with the places of the members berth routes on.
#[derive(Clone)]
pub(crate) struct Message {
    bytes: Bytes,
    kind: Kind,
    id: Option<Span>,
    method: Option<Span>,
    params: Option<Span>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("kind", &self.kind).field("text", &self.text()).finish()
    }
}

/// Why bytes are not an acceptable JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub(crate) struct Invalid {
    /// What is wrong, for the client to read.
    pub(crate) reason: Cow<'static, str>,
    /// Whether the bytes are not JSON at all (-32700) rather than JSON that is not JSON-RPC
    /// (-32600).
    pub(crate) not_json: bool,
    /// The message's `id` as written, when it has a usable one, so that the error can carry it.
    pub(crate) id: Option<Bytes>,
}

impl Invalid {
    fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Self { reason: reason.into(), not_json: false, id: None }
    }

    fn syntax(error: &serde_json::Error) -> Self {
        match error.classify() {
            serde_json::error::Category::Data => Self::new("the message is not a JSON-RPC 2.0 object"),
            _ => Self { reason: format!("the message is not valid JSON: {error}").into(), not_json: true, id: None },
        }
    }
}

/// What a POST body holds: one message, or a JSON-RPC batch.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// One message.
    Single(Message),
    /// A batch (an array of messages); never empty.
    Batch(Vec<Message>),
}

impl Body {
    /// Parses a POST body. A batch is valid only if every element is.
    pub(crate) fn parse(bytes: Bytes) -> Result<Self, Invalid> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'[') {
            return Message::parse(bytes).map(Body::Single);
        }
        let text = utf8(&bytes)?;
        let elements: Vec<&RawValue> = serde_json::from_str(text).map_err(|error| Invalid::syntax(&error))?;
        if elements.is_empty() {
            return Err(Invalid::new("an empty batch holds no message"));
        }
        let base = text.as_ptr() as usize;
        let messages = elements
            .iter()
            .map(|element| {
                let start = element.get().as_ptr() as usize - base;
                Message::parse(bytes.slice(start..start + element.get().len()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Body::Batch(messages))
    }

    /// The messages, in order.
    pub(crate) fn messages(&self) -> &[Message] {
        match self {
            Body::Single(message) => std::slice::from_ref(message),
            Body::Batch(messages) => messages,
        }
    }

    /// The messages, owned.
    pub(crate) fn into_messages(self) -> Vec<Message> {
        match self {
            Body::Single(message) => vec![message],
            Body::Batch(messages) => messages,
        }
    }

    /// Whether the body is a batch.
    pub(crate) fn is_batch(&self) -> bool {
        matches!(self, Body::Batch(_))
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, Invalid> {
    std::str::from_utf8(bytes).map_err(|_| Invalid {
        reason: "the message is not valid UTF-8".into(),
        not_json: true,
        id: None,
    })
}

/// A member name, borrowed from the input unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The members of the envelope berth looks at; every other member is skipped (and kept in the
/// bytes).
#[derive(Default)]
struct Envelope<'a> {
    jsonrpc: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    method: Option<&'a RawValue>,
    params: Option<&'a RawValue>,
    result: Option<&'a RawValue>,
    error: Option<&'a RawValue>,
    duplicate: bool,
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC 2.0 message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut envelope = Envelope::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let slot = match &*key.0 {
                "jsonrpc" => &mut envelope.jsonrpc,
                "id" => &mut envelope.id,
                "method" => &mut envelope.method,
                "params" => &mut envelope.params,
                "result" => &mut envelope.result,
                "error" => &mut envelope.error,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value: &'de RawValue = map.next_value()?;
            envelope.duplicate |= slot.replace(value).is_some();
        }
        Ok(envelope)
    }
}

/// Finds one member of a JSON object given as text; `None` if the text is not an object or has
/// no such member (or has it twice: an ambiguous member is not routed on).
fn member<'a>(object: &'a str, name: &str) -> Option<&'a RawValue> {
    struct Finder<'n>(&'n str);
    impl<'de> Visitor<'de> for Finder<'_> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            let mut twice = false;
            while let Some(key) = map.next_key::<Key<'de>>()? {
                if key.0 == self.0 {
                    let value: &'de RawValue = map.next_value()?;
                    twice |= found.replace(value).is_some();
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(if twice { None } else { found })
        }
    }
    if !object.starts_with('{') {
        return None;
    }
    let mut deserializer = serde_json::Deserializer::from_str(object);
    deserializer.deserialize_map(Finder(name)).ok().flatten()
}

/// The kind of JSON value a raw value is, by its first byte.
fn first_byte(raw: &RawValue) -> u8 {
    raw.get().as_bytes().first().copied().unwrap_or(b' ')
}

/// Whether a raw value may be a request id: MCP's `RequestId` is a string or an integer. Integers
/// are bounded to the signed 64-bit range that every MCP SDK (and rmcp, behind native routes)
/// can represent, so that an id is either refused at once on every route or comes back exactly
/// as written; fractions and exponents are not integers.
fn is_request_id(raw: &RawValue) -> bool {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => true,
        Some(b'-' | b'0'..=b'9') => !text.contains(['.', 'e', 'E']) && text.parse::<i64>().is_ok(),
        _ => false,
    }
}

/// Decodes a JSON string value; `None` if it is not a string.
fn string(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.starts_with('"') {
        return None;
    }
    if !raw.contains('\\') {
        return Some(Cow::Borrowed(&raw[1..raw.len() - 1]));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

#[derive(Deserialize)]
struct ErrorShape<'a> {
    #[allow(dead_code)] // Only its type is checked.
    code: i64,
    #[serde(borrow)]
    message: &'a RawValue,
}

impl Message {
    /// Parses and validates one message. Raw CR and LF bytes (only ever whitespace between tokens
    /// in valid JSON) become spaces, so that the message fits on one line of a stdio pipe and in
    /// one SSE `data:` line.
    pub(crate) fn parse(bytes: Bytes) -> Result<Self, Invalid> {
        let text = utf8(&bytes)?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let envelope = deserializer.deserialize_map(EnvelopeVisitor).map_err(|error| Invalid::syntax(&error))?;
        deserializer.end().map_err(|error| Invalid::syntax(&error))?;
        let base = text.as_ptr() as usize;
        let span = |raw: &RawValue| {
            let start = raw.get().as_ptr() as usize - base;
            start..start + raw.get().len()
        };
        let usable_id = envelope.id.filter(|id| is_request_id(id)).map(|id| bytes.slice(span(id)));
        let invalid = |reason: &'static str| Invalid { reason: reason.into(), not_json: false, id: usable_id.clone() };
        if envelope.duplicate {
            return Err(invalid("a member of the message appears twice"));
        }
        match envelope.jsonrpc.map(|v| string(v.get())) {
            Some(Some(version)) if version == "2.0" => {}
            _ => return Err(invalid("the message lacks \"jsonrpc\": \"2.0\"")),
        }
        let kind = match (envelope.method, envelope.id) {
            (Some(method), id) => {
                if string(method.get()).is_none() {
                    return Err(invalid("\"method\" must be a string"));
                }
                if envelope.result.is_some() || envelope.error.is_some() {
                    return Err(invalid("a request or notification cannot carry \"result\" or \"error\""));
                }
                // MCP's requests and notifications take named params only (JSON-RPC would also
                // allow an array).
                if let Some(params) = envelope.params
                    && first_byte(params) != b'{'
                {
                    return Err(invalid("\"params\" must be an object"));
                }
                match id {
                    Some(id) if is_request_id(id) => Kind::Request,
                    Some(_) => {
                        return Err(invalid(
                            "a request id must be a string or an integer (within the signed 64-bit range)",
                        ));
                    }
                    None => Kind::Notification,
                }
            }
            (None, Some(id)) => {
                if !(is_request_id(id) || id.get() == "null") {
                    return Err(invalid("a response id must be a string, an integer or null"));
                }
                match (envelope.result, envelope.error) {
                    (Some(_), None) if id.get() != "null" => {}
                    (Some(_), None) => return Err(invalid("a result must answer a request id, not null")),
                    (None, Some(error)) => {
                        let shape: Option<ErrorShape<'_>> = serde_json::from_str(error.get()).ok();
                        if !shape.is_some_and(|shape| shape.message.get().starts_with('"')) {
                            return Err(invalid("\"error\" must be an object with an integer code and a message"));
                        }
                    }
                    (Some(_), Some(_)) => return Err(invalid("a response cannot carry both \"result\" and \"error\"")),
                    (None, None) => return Err(invalid("a response must carry \"result\" or \"error\"")),
                }
                Kind::Response
            }
            (None, None) => return Err(invalid("the message has neither \"method\" nor \"id\"")),
        };
        let (id, method, params) = (envelope.id.map(span), envelope.method.map(span), envelope.params.map(span));
        let bytes = one_line(bytes);
        Ok(Self { bytes, kind, id, method, params })
    }

    /// The message's bytes.
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The message as text.
    pub(crate) fn text(&self) -> &str {
        // Validated as UTF-8 by `parse`; `one_line` only replaces ASCII bytes.
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }

    /// Request, notification or response.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// The text of a span.
    pub(crate) fn raw(&self, span: &Span) -> &str {
        self.text().get(span.clone()).unwrap_or_default()
    }

    /// Where the `id` value is.
    pub(crate) fn id_span(&self) -> Option<Span> {
        self.id.clone()
    }

    /// The `id` as written (`null` for a response without one).
    pub(crate) fn id(&self) -> Option<&str> {
        self.id.as_ref().map(|span| self.raw(span))
    }

    /// The `id` as written, shared with the message's bytes.
    pub(crate) fn id_bytes(&self) -> Option<Bytes> {
        self.id.clone().map(|span| self.bytes.slice(span))
    }

    /// The `id` as an unsigned integer, when it is one (the ids berth gives requests it forwards).
    pub(crate) fn id_u64(&self) -> Option<u64> {
        self.id().and_then(|id| id.parse().ok())
    }

    /// The `method`, decoded.
    pub(crate) fn method(&self) -> Option<Cow<'_, str>> {
        self.method.as_ref().and_then(|span| string(self.raw(span)))
    }

    /// The `params` value as written.
    pub(crate) fn params(&self) -> Option<&str> {
        self.params.as_ref().map(|span| self.raw(span))
    }

    /// Finds a value by a path of member names below the message, e.g.
    /// `["params", "_meta", "progressToken"]`.
    pub(crate) fn find(&self, path: &[&str]) -> Option<Span> {
        let text = self.text();
        let (first, rest) = path.split_first()?;
        let mut current: &str = match *first {
            "params" => self.params()?,
            "id" => self.id()?,
            other => member(text, other)?.get(),
        };
        for name in rest {
            current = member(current, name)?.get();
        }
        let start = current.as_ptr() as usize - text.as_ptr() as usize;
        Some(start..start + current.len())
    }

    /// The string at a path, decoded.
    pub(crate) fn find_str(&self, path: &[&str]) -> Option<Cow<'_, str>> {
        self.find(path).and_then(|span| string(self.raw(&span)))
    }

    /// A copy of the message with the values at `edits` replaced; the edits must not overlap.
    pub(crate) fn splice(&self, edits: &mut [(Span, &[u8])]) -> Bytes {
        edits.sort_by_key(|(span, _)| span.start);
        let added: usize = edits.iter().map(|(_, with)| with.len()).sum();
        let mut out = BytesMut::with_capacity(self.bytes.len() + added);
        let mut at = 0;
        for (span, with) in edits.iter() {
            out.extend_from_slice(&self.bytes[at..span.start]);
            out.extend_from_slice(with);
            at = span.end;
        }
        out.extend_from_slice(&self.bytes[at..]);
        out.freeze()
    }
}

/// Replaces the CR and LF bytes of a valid JSON text by spaces (they can only be whitespace
/// between tokens there), copying only when there are any.
fn one_line(bytes: Bytes) -> Bytes {
    if memchr::memchr2(b'\n', b'\r', &bytes).is_none() {
        return bytes;
    }
    let mut copy = BytesMut::from(&bytes[..]);
    for byte in copy.iter_mut() {
        if *byte == b'\n' || *byte == b'\r' {
            *byte = b' ';
        }
    }
    copy.freeze()
}

/// An id in the form berth compares ids by: strings decoded, numbers as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum IdKey {
    /// A string id.
    Str(Box<str>),
    /// A numeric id, as written.
    Num(Box<str>),
}

impl IdKey {
    /// The key of a raw id value; `None` for values that are not ids.
    pub(crate) fn of(raw: &str) -> Option<Self> {
        match raw.as_bytes().first()? {
            b'"' => string(raw).map(|s| IdKey::Str(s.into())),
            b'-' | b'0'..=b'9' => Some(IdKey::Num(raw.into())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Message, Invalid> {
        Message::parse(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn envelopes() {
        use Kind::*;
        let table: &[(&str, Result<Kind, &str>)] = &[
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, Ok(Request)),
            (r#"{"jsonrpc":"2.0","id":"a","method":"x","params":{}}"#, Ok(Request)),
            (r#"{"jsonrpc":"2.0","id":"a","method":"x","params":[1]}"#, Err("\"params\" must be an object")),
            (r#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"x"}"#, Ok(Request)),
            (r#"{"jsonrpc":"2.0","id":9223372036854775807,"method":"x"}"#, Ok(Request)),
            (r#"{"jsonrpc":"2.0","id":9223372036854775808,"method":"x"}"#, Err("a request id must be")),
            (r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"x"}"#, Err("a request id must be")),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#, Err("a request id must be")),
            (r#"{"jsonrpc":"2.0","id":1e3,"method":"x"}"#, Err("a request id must be")),
            (r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, Ok(Notification)),
            (r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, Ok(Response)),
            (r#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x","data":[]}}"#, Ok(Response)),
            (r#"{"x-extra":{"deep":[1,{"id":2}]},"jsonrpc":"2.0","method":"m"}"#, Ok(Notification)),
            (r#"{"jsonrpc":"2.0","id":1}"#, Err("a response must carry")),
            (r#"{"id":1,"method":"ping"}"#, Err("lacks \"jsonrpc\"")),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, Err("lacks \"jsonrpc\"")),
            (r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"string"}"#, Err("\"params\" must be")),
            (r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#, Err("a request id must be")),
            (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#, Err("a request id must be")),
            (r#"{"jsonrpc":"2.0","id":true,"method":"x"}"#, Err("a request id must be")),
            (r#"{"jsonrpc":"2.0","method":7}"#, Err("\"method\" must be a string")),
            (r#"{"jsonrpc":"2.0","id":1,"method":"x","result":1}"#, Err("cannot carry")),
            (r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}"#, Err("both")),
            (r#"{"jsonrpc":"2.0","id":1,"error":"bad"}"#, Err("\"error\" must be")),
            (r#"{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}"#, Err("\"error\" must be")),
            (r#"{"jsonrpc":"2.0","id":null,"result":{}}"#, Err("not null")),
            (r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#, Err("appears twice")),
            (r#"{"jsonrpc":"2.0"}"#, Err("neither")),
            (r#"[1,2]"#, Err("not a JSON-RPC 2.0 object")),
            (r#""text""#, Err("not a JSON-RPC 2.0 object")),
            (r#"{"jsonrpc":"2.0","id":1,"method":"x"} trailing"#, Err("not valid JSON")),
            (r#"{"jsonrpc":"2.0","#, Err("not valid JSON")),
        ];
        for (text, expected) in table {
            match (parse(text), expected) {
                (Ok(message), Ok(kind)) => assert_eq!(message.kind(), *kind, "{text}"),
                (Err(invalid), Err(reason)) => assert!(invalid.reason.contains(reason), "{text}: {invalid}"),
                (got, _) => panic!("{text}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn refusals_keep_a_usable_id_and_tell_syntax_from_shape() {
        let invalid = parse(r#"{"id":"abc","method":"x"}"#).unwrap_err();
        assert_eq!(invalid.id.as_deref(), Some(&b"\"abc\""[..]));
        assert!(!invalid.not_json);
        let invalid = parse(r#"{"jsonrpc":"2.0","id":{"x":1},"method":"x"}"#).unwrap_err();
        assert_eq!(invalid.id, None);
        assert!(parse("{nope").unwrap_err().not_json);
        assert!(Message::parse(Bytes::from_static(b"{\"a\":\"\xff\"}")).unwrap_err().not_json);
    }

    #[test]
    fn ids_and_unknown_members_survive_byte_for_byte() {
        let text = r#"{ "x-first" : [1, 2.50, {"k":"v", "n": 123456789012345678901234567890}], "jsonrpc":"2.0", "id" : -0, "method":"tools/call", "params":{"_meta":{"progressToken": 1e400 },"name":"\u0065cho"} }"#;
        let message = parse(text).unwrap();
        assert_eq!(message.id(), Some("-0"));
        assert_eq!(message.method().as_deref(), Some("tools/call"));
        assert_eq!(message.find_str(&["params", "name"]).as_deref(), Some("echo"));
        let token = message.find(&["params", "_meta", "progressToken"]).unwrap();
        assert_eq!(message.raw(&token), "1e400");
        let id = message.id_span().unwrap();
        let out = message.splice(&mut [(token, b"7"), (id, b"7")]);
        assert_eq!(std::str::from_utf8(&out).unwrap(), text.replace("\"id\" : -0", "\"id\" : 7").replace("1e400", "7"));
    }

    #[test]
    fn lookups_on_unexpected_shapes_find_nothing() {
        let table = [
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":{"nested":1}}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"requestId":2}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#,
        ];
        for text in table {
            let message = parse(text).unwrap();
            let id = message.find(&["params", "requestId"]).map(|span| message.raw(&span).to_string());
            assert!(id.as_deref().is_none_or(|id| IdKey::of(id).is_none()), "{text}: {id:?}");
            assert_eq!(message.find(&["params", "requestId", "deeper"]), None, "{text}");
        }
    }

    #[test]
    fn line_breaks_become_spaces() {
        let message = parse("{\n  \"jsonrpc\": \"2.0\",\r\n  \"method\": \"ping\", \"id\": 1\n}").unwrap();
        assert!(!message.bytes().contains(&b'\n') && !message.bytes().contains(&b'\r'));
        assert_eq!(message.id(), Some("1"));
    }

    #[test]
    fn batches() {
        let body = Body::parse(Bytes::from_static(
            br#" [{"jsonrpc":"2.0","id":1,"method":"a"}, {"jsonrpc":"2.0","method":"b"}]"#,
        ))
        .unwrap();
        assert!(body.is_batch());
        let kinds: Vec<Kind> = body.messages().iter().map(Message::kind).collect();
        assert_eq!(kinds, [Kind::Request, Kind::Notification]);
        assert_eq!(body.messages()[0].text(), r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#);
        assert!(Body::parse(Bytes::from_static(b"[]")).unwrap_err().reason.contains("empty batch"));
        let bad = Body::parse(Bytes::from_static(br#"[{"jsonrpc":"2.0","id":9,"method":"a"}, {"id":3}]"#));
        assert_eq!(bad.unwrap_err().id.as_deref(), Some(&b"3"[..]));
    }

    #[test]
    fn id_keys() {
        assert_eq!(IdKey::of("\"a\""), IdKey::of("\"\\u0061\""));
        assert_ne!(IdKey::of("1"), IdKey::of("\"1\""));
        assert_eq!(IdKey::of("null"), None);
        assert_eq!(IdKey::of("{}"), None);
    }
}
