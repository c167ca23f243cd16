//! The corpus file's notation: how an entry's readable text becomes the exact bytes written.
//!
//! Each line break of the text is a CRLF (so a head reads as it travels), and the text ends
//! where the TOML string does. Other bytes are escapes: `\r`, `\n`, `\t`, `\0`, `\xHH` (any
//! byte, invalid UTF-8 included), `\\`, `\$`; a `\` at the end of a line joins it to the next
//! with no line break. Directives, `${...}`:
//!
//! - `${alice}`: Alice's right `Authorization` value (`Basic ...`);
//! - `${b64:TEXT}`: the standard Base64 of TEXT's bytes (escapes allowed in TEXT);
//! - `${repeat:N:TEXT}`: TEXT, N times;
//! - `${len}`: the length in bytes of the body of the request it sits in (all that follows the
//!   first empty line), for `Content-Length`;
//! - `${init}`: the body of an `initialize` request (2025-11-25).
//!
//! TEXT ends at the first `}`; write `\x7d` for a `}` inside it.

use base64::Engine;

use crate::{harness::alice, requests::initialize};

/// The bytes of one request written in the notation.
pub(crate) fn expand(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut len_at = Vec::new();
    expand_into(text, &mut out, &mut len_at);
    if len_at.is_empty() {
        return out;
    }
    // `${len}` left a marker; the body is what follows the first empty line.
    let body_start = find(&out, b"\r\n\r\n").map_or(out.len(), |at| at + 4);
    assert!(len_at.iter().all(|&at| at < body_start), "${{len}} belongs in the head");
    let digits = (out.len() - body_start).to_string();
    let mut result = Vec::with_capacity(out.len());
    let mut rest = &out[..];
    while let Some(at) = find(rest, MARKER) {
        result.extend_from_slice(&rest[..at]);
        result.extend_from_slice(digits.as_bytes());
        rest = &rest[at + MARKER.len()..];
    }
    result.extend_from_slice(rest);
    result
}

/// Where `${len}` stands until the body's length is known: bytes no entry writes.
const MARKER: &[u8] = b"\xff\xfeLEN\xfe\xff";

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn expand_into(text: &str, out: &mut Vec<u8>, len_at: &mut Vec<usize>) {
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '\n' => out.extend_from_slice(b"\r\n"),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('r') => out.push(b'\r'),
                Some('n') => out.push(b'\n'),
                Some('t') => out.push(b'\t'),
                Some('0') => out.push(0),
                Some('\\') => out.push(b'\\'),
                Some('$') => out.push(b'$'),
                Some('\n') => {}
                Some('x') => {
                    let hex: String = (0..2).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                    out.push(u8::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("bad escape \\x{hex}")));
                }
                other => panic!("unknown escape \\{other:?}"),
            },
            '$' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                let close = text[at..].find('}').unwrap_or_else(|| panic!("unclosed directive at {at}")) + at;
                directive(&text[at + 2..close], out, len_at);
                while chars.peek().is_some_and(|&(next, _)| next <= close) {
                    chars.next();
                }
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}

fn directive(directive: &str, out: &mut Vec<u8>, len_at: &mut Vec<usize>) {
    let (name, argument) = directive.split_once(':').unwrap_or((directive, ""));
    match name {
        "alice" => out.extend_from_slice(alice().as_bytes()),
        "init" => out.extend_from_slice(initialize("2025-11-25").to_string().as_bytes()),
        "len" => {
            len_at.push(out.len());
            out.extend_from_slice(MARKER);
        }
        "b64" => {
            let mut bytes = Vec::new();
            expand_into(argument, &mut bytes, &mut Vec::new());
            out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(bytes).as_bytes());
        }
        "repeat" => {
            let (count, text) = argument.split_once(':').expect("${repeat:N:TEXT}");
            let mut once = Vec::new();
            expand_into(text, &mut once, &mut Vec::new());
            for _ in 0..count.parse::<usize>().expect("a count") {
                out.extend_from_slice(&once);
            }
        }
        other => panic!("unknown directive ${{{other}}}"),
    }
}

#[test]
fn the_notation_expands_as_documented() {
    assert_eq!(expand("GET / HTTP/1.1\nHost: x\n\n"), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(expand("a\\x00\\xc0b\\\nc\\r\\n"), b"a\x00\xc0bc\r\n");
    assert_eq!(expand("${b64:a:b}|${repeat:3:x\\r}"), b"YTpi|x\rx\rx\r");
    assert_eq!(expand("POST / HTTP/1.1\nContent-Length: ${len}\n\n{\"a\":1}"), {
        b"POST / HTTP/1.1\r\nContent-Length: 7\r\n\r\n{\"a\":1}".to_vec()
    });
}
