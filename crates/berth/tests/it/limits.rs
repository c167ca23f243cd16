//! The listener's defences: slow clients are cut off, and connections beyond the cap wait.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::harness::{Berth, config_with};

async fn read_some(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut buffer = vec![0; 4096];
    match tokio::time::timeout(within, stream.read(&mut buffer)).await {
        Ok(Ok(n)) => Some(buffer[..n].to_vec()),
        Ok(Err(_)) => Some(Vec::new()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let berth = Berth::start(&config_with("[server]\nheader_read_timeout = \"1s\"\n")).await;
    let mut slow = TcpStream::connect(berth.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
    // The server closes the connection (possibly after a 408) instead of waiting for ever; the
    // long guard only keeps a broken build from hanging the suite.
    let answer = read_some(&mut slow, Duration::from_secs(30)).await.expect("the server gave up on the client");
    assert!(
        answer.is_empty() || String::from_utf8_lossy(&answer).contains("408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    berth.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let berth = Berth::start(&config_with("[server]\nmax_connections = 1\n")).await;
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut first = TcpStream::connect(berth.addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let answer = read_some(&mut first, Duration::from_secs(30)).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    // The first connection stays open (keep-alive) and holds the only slot.
    let mut second = TcpStream::connect(berth.addr).await.unwrap();
    second.write_all(request).await.unwrap();
    assert!(read_some(&mut second, Duration::from_millis(500)).await.is_none(), "served beyond the cap");
    drop(first);
    let answer = read_some(&mut second, Duration::from_secs(30)).await.expect("served once a slot is free");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    berth.stop().await;
}
