//! The client side of the corpus: one raw TCP connection from a chosen loopback source address,
//! every request written in one go, and the HTTP/1 answers read back in order, each with a
//! hang guard.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, tcp::OwnedReadHalf},
};

/// How long one answer may take: a hang guard, never a timing assertion.
pub(crate) const GUARD: Duration = Duration::from_secs(20);

/// The loopback address `127.x.y.z` numbered `n` within `block`, never `127.0.0.1` (berth's):
/// each block holds 250 addresses, so callers keep theirs apart by block.
pub(crate) fn source(block: u8, n: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, block, u8::try_from(n / 250).unwrap(), u8::try_from(n % 250).unwrap() + 2)
}

/// One answer as it came off the wire.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status code of its status line.
    pub(crate) status: u16,
    /// Its headers, names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    /// Its body, de-chunked.
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// The first header named `name` (lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The error slug of a JSON refusal: `error` of berth's plain refusals, `error.data.error`
    /// of its JSON-RPC ones.
    pub(crate) fn slug(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        let error = &value["error"];
        error.as_str().or_else(|| error["data"]["error"].as_str()).map(str::to_owned)
    }
}

/// Connects to `berth` from `from`, writes `bytes` (from a task of its own, so that a server
/// that stops reading cannot block the reader) and reads one answer per entry of `heads`
/// (whether that request was a `HEAD`, whose answer has no body). Ends early, with what it
/// has, when the server closes; an `Err` says what went wrong (a hang above all).
pub(crate) async fn exchange(berth: SocketAddr, from: Ipv4Addr, bytes: Vec<u8>, heads: &[bool]) -> Exchanged {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.bind(SocketAddr::new(from.into(), 0)).expect("bind a loopback source address");
    let stream = tokio::time::timeout(GUARD, socket.connect(berth)).await.expect("connect hangs").expect("connect");
    stream.set_nodelay(true).unwrap();
    let (read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        // A server may answer and close before reading everything (a 431): not our failure.
        let _ = write.write_all(&bytes).await;
        let _ = write.flush().await;
        write
    });
    let mut reader = Reader { stream: read, buf: Vec::new(), eof: false };
    let mut answers = Vec::new();
    let mut ending = None;
    for &head in heads {
        match tokio::time::timeout(GUARD, reader.answer(head)).await {
            Err(_) => {
                ending = Some(format!("no answer {} within {GUARD:?} (hang)", answers.len() + 1));
                break;
            }
            Ok(Ok(Some(answer))) => answers.push(answer),
            Ok(Ok(None)) => break,
            Ok(Err(error)) => {
                ending = Some(format!("answer {}: {error}", answers.len() + 1));
                break;
            }
        }
    }
    // Keep the write half until the answers are read: dropping it would half-close the
    // connection, which some requests (HTTP/1.0 ones) must not see early.
    drop(writer.await);
    Exchanged { answers, ending }
}

/// What one connection gave back.
#[derive(Debug)]
pub(crate) struct Exchanged {
    /// The answers, in order.
    pub(crate) answers: Vec<Answer>,
    /// Why reading stopped early, if it was not a clean close.
    pub(crate) ending: Option<String>,
}

/// A buffered reader of HTTP/1 answers.
struct Reader {
    stream: OwnedReadHalf,
    buf: Vec<u8>,
    eof: bool,
}

impl Reader {
    /// Reads more bytes; false at the end of the stream (a reset counts as the end).
    async fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Takes bytes up to and including `delimiter`, reading as needed; `None` at the end.
    async fn until(&mut self, delimiter: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = self.buf.windows(delimiter.len()).position(|w| w == delimiter) {
                return Some(self.buf.drain(..at + delimiter.len()).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Takes exactly `n` bytes; `None` if the stream ends first.
    async fn exactly(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// The next final answer (1xx answers are skipped); `Ok(None)` when the stream ends
    /// before its first byte.
    async fn answer(&mut self, head_request: bool) -> Result<Option<Answer>, String> {
        loop {
            let Some(head) = self.until(b"\r\n\r\n").await else {
                return if self.buf.is_empty() { Ok(None) } else { Err("the stream ended inside a head".into()) };
            };
            let head = String::from_utf8_lossy(&head).into_owned();
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status: u16 = status_line
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse().ok())
                .ok_or_else(|| format!("not a status line: {status_line:?}"))?;
            let headers: Vec<(String, String)> = lines
                .filter_map(|line| line.split_once(':'))
                .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
                .collect();
            let mut answer = Answer { status, headers, body: Vec::new() };
            if (100..200).contains(&status) {
                continue;
            }
            if head_request || status == 204 || status == 304 {
                return Ok(Some(answer));
            }
            if answer.header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
                answer.body = self.chunked().await.ok_or("the stream ended inside a chunked body")?;
            } else if let Some(length) = answer.header("content-length") {
                let length: usize = length.parse().map_err(|_| format!("bad content-length {length}"))?;
                answer.body = self.exactly(length).await.ok_or("the stream ended inside a body")?;
            } else {
                while self.fill().await {}
                answer.body = std::mem::take(&mut self.buf);
            }
            return Ok(Some(answer));
        }
    }

    /// A chunked body, de-chunked; `None` if the stream ends first.
    async fn chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.until(b"\r\n").await?;
            let size = String::from_utf8_lossy(&line[..line.len() - 2]);
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while self.until(b"\r\n").await?.len() > 2 {}
                return Some(body);
            }
            body.extend(self.exactly(size).await?);
            self.exactly(2).await?;
        }
    }
}
