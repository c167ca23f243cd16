//! The baseline of the stdio path: the same server driven directly over its stdin/stdout pipe,
//! newline-delimited JSON-RPC, with any number of requests in flight.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
    sync::{mpsc, oneshot},
};

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A stdio MCP server the bench talks to directly.
pub(crate) struct Pipe {
    /// Held so that the server is killed when the pipe is dropped.
    child: Child,
    writer: mpsc::Sender<Bytes>,
    waiters: Waiters,
    next_id: AtomicU64,
}

impl Pipe {
    /// Spawns `command` and completes the initialize handshake with it.
    pub(crate) async fn start(mut command: Command) -> anyhow::Result<Arc<Self>> {
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
        let mut child = command.spawn().context("spawn the stdio server")?;
        let mut stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (writer, mut outbox) = mpsc::channel::<Bytes>(256);
        // Like any stdio client: queue lines, write them in order, flush when the queue is empty.
        tokio::spawn(async move {
            while let Some(line) = outbox.recv().await {
                if stdin.write_all(&line).await.is_err() {
                    return;
                }
                while let Ok(line) = outbox.try_recv() {
                    if stdin.write_all(&line).await.is_err() {
                        return;
                    }
                }
                if stdin.flush().await.is_err() {
                    return;
                }
            }
        });
        let waiters: Waiters = Arc::default();
        let routes = Arc::clone(&waiters);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(message) = serde_json::from_str::<Value>(&line) else { continue };
                let Some(id) = message.get("id").and_then(Value::as_u64) else { continue };
                if message.get("method").is_some() {
                    continue; // A server request; the benchmarked tools send none.
                }
                if let Some(waiter) = routes.lock().expect("waiters lock").remove(&id) {
                    let _ = waiter.send(message);
                }
            }
        });
        let pipe = Arc::new(Self { child, writer, waiters, next_id: AtomicU64::new(1) });
        let init = pipe
            .request(
                "initialize",
                json!({"protocolVersion": crate::http::PROTOCOL_VERSION, "capabilities": {},
                    "clientInfo": {"name": "berth-bench", "version": env!("CARGO_PKG_VERSION")}}),
            )
            .await?;
        if init.get("result").is_none() {
            bail!("initialize failed: {init}");
        }
        pipe.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        Ok(pipe)
    }

    /// The server's process id (0 once it is gone).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    async fn send(&self, message: Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(&message)?;
        line.push(b'\n');
        self.writer.send(Bytes::from(line)).await.map_err(|_| anyhow::anyhow!("the server's stdin closed"))
    }

    /// Sends one request and waits (at most 30 s) for its response.
    pub(crate) async fn request(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.waiters.lock().expect("waiters lock").insert(id, sender);
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await?;
        tokio::time::timeout(Duration::from_secs(30), receiver)
            .await
            .context("no answer within 30 s")?
            .context("the server's stdout closed")
    }
}
