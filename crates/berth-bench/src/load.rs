//! The load loops: a fixed number of requests in flight, each worker sending its next call as
//! soon as the previous one is answered (a closed loop, like a client waiting on its tools).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::HeaderValue;
use serde_json::Value;

use crate::{
    http::{Conn, Endpoint},
    pipe::Pipe,
    stats::{Run, Tally},
};

/// The tool call every scenario makes.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The tool's name.
    pub(crate) tool: &'static str,
    /// Its arguments.
    pub(crate) arguments: Value,
}

impl Call {
    fn params(&self) -> Value {
        serde_json::json!({"name": self.tool, "arguments": self.arguments})
    }

    fn body(&self, id: u64) -> Bytes {
        let message = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": self.params()});
        Bytes::from(serde_json::to_vec(&message).expect("a Value serializes"))
    }
}

/// Request ids, unique in the whole run: a session's ids must never repeat (rmcp routes answers
/// by id), and sessions are shared by workers and rounds.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Longest wait for one answer before it counts as an error (a hang guard, not a measure).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Until {
    /// After this long.
    Elapsed(Duration),
    /// After every session made this many calls.
    CallsPerSession(usize),
}

/// Calls `call` over HTTP with one worker (and one connection) per request in flight; worker
/// `w` uses the sessions `w`, `w + inflight`, ... in turn, so every session gets its share.
pub(crate) async fn http(
    endpoint: &Endpoint,
    sessions: &[HeaderValue],
    inflight: usize,
    call: &Call,
    until: Until,
) -> anyhow::Result<Run> {
    let mut conns = Vec::with_capacity(inflight);
    for _ in 0..inflight {
        conns.push(Conn::open(endpoint).await?);
    }
    let start = Instant::now();
    let mut workers = Vec::with_capacity(inflight);
    for (worker, mut conn) in conns.into_iter().enumerate() {
        let mine: Vec<HeaderValue> = sessions.iter().skip(worker % sessions.len()).step_by(inflight).cloned().collect();
        let (endpoint, call) = (endpoint.clone(), call.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut done = 0usize;
            let total = match until {
                Until::CallsPerSession(calls) => Some(calls * mine.len()),
                Until::Elapsed(_) => None,
            };
            loop {
                match (until, total) {
                    (Until::Elapsed(limit), _) if start.elapsed() >= limit => break,
                    (_, Some(total)) if done >= total => break,
                    _ => {}
                }
                let session = &mine[done % mine.len()];
                done += 1;
                let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let answer = tokio::time::timeout(CALL_TIMEOUT, conn.post(&endpoint, Some(session), call.body(id)))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}")));
                match answer {
                    Ok(answer) if answer.is_result_for(id) => tally.ok(sent.elapsed()),
                    Ok(answer) => {
                        if tally.errors == 0 {
                            eprintln!("berth-bench: unexpected answer {}: {:?}", answer.status, answer.messages());
                        }
                        tally.errors += 1;
                    }
                    Err(error) => {
                        if tally.errors == 0 {
                            eprintln!("berth-bench: call failed: {error:#}");
                        }
                        tally.errors += 1;
                        // The connection broke: open a new one and go on.
                        match Conn::open(&endpoint).await {
                            Ok(fresh) => conn = fresh,
                            Err(_) => break,
                        }
                    }
                }
            }
            tally
        }));
    }
    let mut tallies = Vec::with_capacity(inflight);
    for worker in workers {
        tallies.push(worker.await?);
    }
    Ok(Run::from_tallies(tallies, start.elapsed()))
}

/// Calls `call` directly over `pipe` with `inflight` requests outstanding for `limit`.
pub(crate) async fn pipe(pipe: &Arc<Pipe>, inflight: usize, call: &Call, limit: Duration) -> anyhow::Result<Run> {
    let start = Instant::now();
    let mut workers = Vec::with_capacity(inflight);
    for _ in 0..inflight {
        let (pipe, params) = (Arc::clone(pipe), call.params());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while start.elapsed() < limit {
                let sent = Instant::now();
                match pipe.request("tools/call", params.clone()).await {
                    Ok(answer) if answer.get("result").is_some() => tally.ok(sent.elapsed()),
                    Ok(_) => tally.errors += 1,
                    Err(_) => {
                        tally.errors += 1;
                        break;
                    }
                }
            }
            tally
        }));
    }
    let mut tallies = Vec::with_capacity(inflight);
    for worker in workers {
        tallies.push(worker.await?);
    }
    Ok(Run::from_tallies(tallies, start.elapsed()))
}

/// Opens `count` sessions over `connections` connections at once; answers them and the time
/// it took.
pub(crate) async fn open_sessions(
    endpoint: &Endpoint,
    count: usize,
    connections: usize,
) -> anyhow::Result<(Vec<HeaderValue>, Duration)> {
    let start = Instant::now();
    let connections = connections.clamp(1, count.max(1));
    let mut workers = Vec::with_capacity(connections);
    for worker in 0..connections {
        let endpoint = endpoint.clone();
        let share = count / connections + usize::from(worker < count % connections);
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::open(&endpoint).await?;
            let mut sessions = Vec::with_capacity(share);
            for _ in 0..share {
                sessions.push(conn.initialize(&endpoint).await?);
            }
            anyhow::Ok(sessions)
        }));
    }
    let mut sessions = Vec::with_capacity(count);
    for worker in workers {
        sessions.extend(worker.await??);
    }
    Ok((sessions, start.elapsed()))
}
