//! Property tests beside the corpus: random `Authorization` values (any valid header bytes,
//! `Basic` with the Base64 of random bytes, `Bearer` with random tokens) and random paths (from
//! segments such as `..`, `%2e`, `%2F`, empty ones, upper case, raw UTF-8), sent over real TCP to
//! one berth started once on a runtime of its own. Every request gets an answer, never a 500,
//! and its status is the one a model of berth's routing says: a wrong credential 401 (429 once
//! throttled), a path 200, 401 or 404 without credentials and 200, 400 or 404 with them.
//!
//! Throttling stays on (the default configuration): each random credential comes from a
//! loopback address of its own, names no real user, and the authenticated path cases all come
//! from one address, where Alice is remembered after her first login.

use std::sync::{
    OnceLock,
    atomic::{AtomicU32, Ordering},
};

use base64::Engine;
use proptest::prelude::*;

use super::wire::{self, source};
use crate::harness::{Berth, alice, fixture_config};

/// The berth every case talks to, and the runtime it is served on.
struct Shared {
    runtime: tokio::runtime::Runtime,
    berth: Berth,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let berth = runtime.block_on(Berth::start(&fixture_config("")));
        Shared { runtime, berth }
    })
}

/// The status of the one answer to `request`, sent from `from`; panics on a hang or no answer.
fn status(from: std::net::Ipv4Addr, request: Vec<u8>) -> u16 {
    let shared = shared();
    let exchanged = shared.runtime.block_on(wire::exchange(shared.berth.addr, from, request, &[false]));
    assert!(exchanged.ending.is_none(), "{:?}", exchanged.ending);
    assert_eq!(exchanged.answers.len(), 1, "no answer");
    exchanged.answers[0].status
}

/// A fresh source address from `block` for each call.
fn fresh(block: u8) -> std::net::Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    source(block, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `Authorization` values: valid header bytes of every kind, and well-formed schemes with
/// random content.
fn authorization() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff];
    let scheme = prop::sample::select(vec!["Basic", "basic", "BASIC", "Bearer", "Basic  "]);
    prop_oneof![
        prop::collection::vec(byte, 0..80),
        (scheme.clone(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(scheme, bytes)| {
            format!("{scheme} {}", base64::engine::general_purpose::STANDARD.encode(bytes)).into_bytes()
        }),
        (scheme.clone(), "[a-z]{0,8}", prop::collection::vec(any::<u8>(), 0..24)).prop_map(
            |(scheme, user, password)| {
                let mut credential = format!("{user}:").into_bytes();
                credential.extend(password);
                format!("{scheme} {}", base64::engine::general_purpose::STANDARD.encode(credential)).into_bytes()
            }
        ),
        (scheme, "[ -~]{0,64}").prop_map(|(scheme, token)| format!("{scheme} {token}").into_bytes()),
    ]
}

/// Paths made of hostile segments.
fn path() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec![
        "fx",
        "fx-solo",
        "conformance",
        "FX",
        "Conformance",
        "mcp",
        "MCP",
        "..",
        ".",
        "%2e",
        "%2e%2e",
        "%2E",
        "%2F",
        "%2f",
        "",
        "\u{fc}",
        "%c0%ae",
        "%00",
        "readyz",
        ".well-known",
        "oauth-x",
        "a;b",
        "~",
    ]);
    (prop::collection::vec(segment, 1..5), any::<bool>()).prop_map(|(segments, query)| {
        let mut path = format!("/{}", segments.join("/"));
        if query {
            path.push_str("?x=../..");
        }
        path
    })
}

/// What berth answers a GET of `path` (with an SSE Accept), as its routing is documented.
fn expected(path: &str, authenticated: bool) -> u16 {
    let path = path.split('?').next().unwrap();
    if path == "/" || path == "/readyz" {
        return 200;
    }
    if path.starts_with("/.well-known/oauth-") {
        return 404;
    }
    if !authenticated {
        return 401;
    }
    let endpoint = path.strip_suffix('/').unwrap_or(path);
    let backends = ["fx", "fx-solo", "conformance"];
    // A real endpoint, without a session: 400.
    if backends.iter().any(|backend| endpoint == format!("/{backend}/mcp")) { 400 } else { 404 }
}

fn get(path: &str, authorization: Option<&[u8]>) -> Vec<u8> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: berth.test\r\nAccept: text/event-stream\r\n").into_bytes();
    if let Some(value) = authorization {
        request.extend(b"Authorization: ");
        request.extend(value);
        request.extend(b"\r\n");
    }
    request.extend(b"\r\n");
    request
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// A random credential is refused (401, or 429 once throttled), never a 500 or a hang.
    #[test]
    fn random_credentials_are_refused(value in authorization()) {
        prop_assume!(value != alice().into_bytes());
        let got = status(fresh(2), get("/fx/mcp", Some(&value)));
        prop_assert!(got == 401 || got == 429, "{:?}: {got}", String::from_utf8_lossy(&value));
    }

    /// A random path gets the status its route deserves, with credentials and without.
    #[test]
    fn random_paths_get_their_routes_status(path in path()) {
        let anonymous = status(fresh(3), get(&path, None));
        prop_assert_eq!(anonymous, expected(&path, false), "anonymous {}", path);
        let desk = source(4, 0);
        let authenticated = status(desk, get(&path, Some(alice().as_bytes())));
        prop_assert_eq!(authenticated, expected(&path, true), "as alice {}", path);
    }
}
