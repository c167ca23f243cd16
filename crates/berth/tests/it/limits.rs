//! The listener's defences: every phase of a connection has a deadline, and a full connection
//! table makes room for a client that speaks, unless every connection has a request in flight.
//!
//! These tests speak raw bytes over loopback so that they can be exactly as silent, partial or
//! slow as a hostile client. The long timeouts they wait with are hang guards, never timing
//! assertions.

use std::time::Duration;

use futures::future::join_all;
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    harness::{Berth, alice, config_with, http},
    requests::open_session,
};

/// Long enough that only a broken build waits this long: a hang guard, not a timing assertion.
const GUARD: Duration = Duration::from_secs(30);

/// The client connection preface of HTTP/2 (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/2 frame types used here.
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;

/// One HTTP/2 frame: 24-bit length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    bytes.extend([kind, flags]);
    bytes.extend(stream.to_be_bytes());
    bytes.extend(payload);
    bytes
}

/// A request on stream 1 with no body (HEADERS with END_HEADERS and END_STREAM). Its header
/// block is HPACK at its plainest: each field a literal, new name, not indexed, no Huffman.
fn h2_request(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        assert!(name.len() < 127 && value.len() < 127, "one-byte HPACK lengths only");
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend(name.as_bytes());
        block.push(value.len() as u8);
        block.extend(value.as_bytes());
    }
    frame(HEADERS, 0x1 | 0x4, 1, &block)
}

/// The (type, stream id) of each whole frame a server sent (its side of HTTP/2 has no preface).
fn frames(mut bytes: &[u8]) -> Vec<(u8, u32)> {
    let mut found = Vec::new();
    while bytes.len() >= 9 {
        let length = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        found.push((bytes[3], stream));
        bytes = &bytes[(9 + length).min(bytes.len())..];
    }
    found
}

/// Whatever arrives within `within`, or `None` if nothing does.
async fn read_some(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut buffer = vec![0; 4096];
    match tokio::time::timeout(within, stream.read(&mut buffer)).await {
        Ok(Ok(n)) => Some(buffer[..n].to_vec()),
        Ok(Err(_)) => Some(Vec::new()),
        Err(_) => None,
    }
}

/// Everything the server sends until it closes the connection, or `None` if it keeps it open
/// past the hang guard. A reset counts as closed.
async fn read_to_close(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buffer = vec![0; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(GUARD, read_all).await.ok().map(|()| received)
}

/// Reads one HTTP/1.1 response with a `Content-Length` body: its status and body.
async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> Option<(u16, Vec<u8>)> {
    let read = async {
        let mut received = Vec::new();
        let mut buffer = vec![0; 4096];
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                let status = head.split(' ').nth(1)?.parse().ok()?;
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|value| value.trim().parse().ok())?;
                if received.len() >= end + 4 + length {
                    return Some((status, received[end + 4..end + 4 + length].to_vec()));
                }
            }
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(GUARD, read).await.ok().flatten()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn connections_that_never_complete_a_first_request_are_closed() {
    let berth = Berth::start(&config_with("[server]\nheader_read_timeout = \"1s\"\n")).await;
    let preface_and_settings = [H2_PREFACE, &frame(SETTINGS, 0, 0, &[])].concat();
    let cases: [(&str, &[u8]); 6] = [
        ("nothing at all", b""),
        ("part of the HTTP/2 preface", &H2_PREFACE[..10]),
        ("the HTTP/2 preface and SETTINGS, but no HEADERS", &preface_and_settings),
        ("the first byte of `POST`, which could still be the HTTP/2 preface", b"P"),
        ("part of an HTTP/1 request line", b"GET /readyz HT"),
        ("HTTP/1 headers that never end", b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: "),
    ];
    let outcomes = join_all(cases.iter().map(|(name, sent)| async move {
        let mut stream = TcpStream::connect(berth.addr).await.unwrap();
        stream.write_all(sent).await.unwrap();
        // The server may say goodbye first (HTTP/2 SETTINGS and GOAWAY, an HTTP/1 408): what
        // matters is that it closes the connection.
        (*name, read_to_close(&mut stream).await)
    }))
    .await;
    let open: Vec<&str> = outcomes.iter().filter(|(_, closed)| closed.is_none()).map(|(name, _)| *name).collect();
    assert!(open.is_empty(), "still open past the first-request deadline: {open:?}");
    berth.stop().await;
}

#[tokio::test]
async fn a_request_body_that_trickles_in_gets_408() {
    let berth = Berth::start(&config_with("[server]\nbody_read_timeout = \"1s\"\n")).await;
    let stream = TcpStream::connect(berth.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /conformance/mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\
         Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n\
         Content-Length: 64\r\n\r\n",
        alice()
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    // One byte every 250 ms: each read makes progress, only the whole body is late. Were there
    // no deadline, all 64 bytes (blanks, not JSON) would arrive and get a 400.
    let trickle = tokio::spawn(async move {
        for _ in 0..64 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let (status, body) = read_response(&mut reader).await.expect("an answer");
    trickle.abort();
    assert_eq!(status, 408, "{}", text(&body));
    let body: Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(body["error"], "request_timeout", "{body}");
    berth.stop().await;
}

#[tokio::test]
async fn a_keep_alive_connection_idle_too_long_is_closed() {
    // HTTP/1's header timeout also runs between requests: make it long so that only the idle
    // deadline can close the connection.
    let berth =
        Berth::start(&config_with("[server]\nheader_read_timeout = \"1h\"\nconnection_idle_timeout = \"1s\"\n")).await;
    let mut stream = TcpStream::connect(berth.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let (status, _) = read_response(&mut stream).await.expect("an answer");
    assert_eq!(status, 200);
    assert!(read_to_close(&mut stream).await.is_some(), "the idle connection stays open");
    berth.stop().await;
}

#[tokio::test]
async fn silent_connections_are_evicted_for_a_client_that_speaks() {
    // The header deadline is out of reach: only eviction can free a slot.
    let berth = Berth::start(&config_with("[server]\nmax_connections = 4\nheader_read_timeout = \"1h\"\n")).await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(berth.addr).await.unwrap());
    }
    let served = tokio::time::timeout(GUARD, http().get(berth.url("/")).send()).await;
    let response = served.expect("a speaking client is served while silent sockets fill the table").unwrap();
    assert_eq!(response.status(), 200);
    // The silent connection that waited longest made room.
    assert!(read_to_close(&mut silent[0]).await.is_some(), "the oldest silent connection stays open");
    berth.stop().await;
}

/// Opens a session on the native backend and its GET stream on a connection of its own.
async fn open_sse_stream(berth: &Berth) -> TcpStream {
    let session = open_session(&berth.mcp_url("conformance")).await;
    let mut stream = TcpStream::connect(berth.addr).await.unwrap();
    let request = format!(
        "GET /conformance/mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nAccept: text/event-stream\r\n\
         Mcp-Session-Id: {session}\r\nMCP-Protocol-Version: 2025-11-25\r\n\r\n",
        alice()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_some(&mut stream, GUARD).await.expect("the stream opens");
    assert!(text(&head).starts_with("HTTP/1.1 200"), "{}", text(&head));
    stream
}

#[tokio::test]
async fn when_every_connection_has_a_request_in_flight_newcomers_wait_for_a_free_slot() {
    let berth = Berth::start(&config_with("[server]\nmax_connections = 4\n")).await;
    // Four SSE streams in flight, one per connection: nothing may be evicted. (The sessions'
    // POST connections were idle, and made room for the streams.)
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(open_sse_stream(&berth).await);
    }
    let mut newcomer = TcpStream::connect(berth.addr).await.unwrap();
    newcomer.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    assert!(read_some(&mut newcomer, Duration::from_millis(500)).await.is_none(), "served beyond the cap");
    // The client of one stream goes away: its stream ends and its slot is free.
    drop(streams.remove(0));
    let answer = read_some(&mut newcomer, GUARD).await.expect("served once a slot is free");
    assert!(text(&answer).starts_with("HTTP/1.1 200"), "{}", text(&answer));
    berth.stop().await;
}

#[tokio::test]
async fn http2_is_served_and_an_http2_connection_with_no_open_stream_is_closed() {
    let berth =
        Berth::start(&config_with("[server]\nheader_read_timeout = \"1h\"\nconnection_idle_timeout = \"1s\"\n")).await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = client.get(berth.url("/")).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, reqwest::Version::HTTP_2));

    let mut stream = TcpStream::connect(berth.addr).await.unwrap();
    let get = h2_request(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "localhost")]);
    let request = [H2_PREFACE, &frame(SETTINGS, 0, 0, &[]), &get].concat();
    stream.write_all(&request).await.unwrap();
    let received = read_to_close(&mut stream).await.expect("the idle HTTP/2 connection is closed");
    let frames = frames(&received);
    assert!(frames.contains(&(HEADERS, 1)), "the request was answered: {frames:?}");
    assert!(frames.iter().any(|(kind, _)| *kind == GOAWAY), "closed with a GOAWAY: {frames:?}");
    berth.stop().await;
}

#[tokio::test]
async fn a_dead_http2_peer_under_an_open_stream_is_found_by_pings() {
    let berth = Berth::start(&config_with("[server]\nhttp2_keep_alive_interval = \"1s\"\n")).await;
    let session = open_session(&berth.mcp_url("conformance")).await;
    let authorization = alice();
    let get = h2_request(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/conformance/mcp"),
        (":authority", "localhost"),
        ("authorization", &authorization),
        ("accept", "text/event-stream"),
        ("mcp-session-id", &session),
        ("mcp-protocol-version", "2025-11-25"),
    ]);
    let mut stream = TcpStream::connect(berth.addr).await.unwrap();
    stream.write_all(&[H2_PREFACE, &frame(SETTINGS, 0, 0, &[]), &get].concat()).await.unwrap();
    // The SSE stream is in flight, so no idle deadline applies; this peer never answers the
    // server's PINGs, as a dead one would not, and that alone must close the connection.
    let received = read_to_close(&mut stream).await.expect("the unanswered pings close the connection");
    let frames = frames(&received);
    assert!(frames.contains(&(HEADERS, 1)), "the stream was opened: {frames:?}");
    assert!(frames.iter().any(|(kind, _)| *kind == PING), "the server pinged: {frames:?}");
    berth.stop().await;
}
