//! One instance of a stdio server and its supervisor: start, handshake, relay, restart with
//! backoff after a crash, stop.
//!
//! The supervisor task owns the process or container; nothing else starts or stops it. A
//! crash answers every in-flight request with an error at once, and the next process is
//! initialized with the same parameters as the first, so that the client sessions on this
//! instance keep working without initializing again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::{
    io::AsyncWriteExt,
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    frame::LineFramer,
    launch::{Launched, Launcher},
    relay::{LinkState, Relay},
};
use crate::config::StdioSpec;

/// The outcome of the first start: the server's initialize result, or why it failed.
pub(crate) type Handshake = Option<Result<Value, String>>;

/// One instance.
pub(crate) struct Instance {
    id: String,
    relay: Arc<Relay>,
    launcher: Arc<Launcher>,
    spec: Arc<StdioSpec>,
    /// The initialize parameters used at every start; `None` for an instance that serves
    /// stateless (2026-07-28) clients and is never initialized by berth.
    init_params: Option<Value>,
    handshake: watch::Sender<Handshake>,
    /// Resource subscriptions held on the server, with the number of sessions behind each.
    subscriptions: Mutex<HashMap<String, usize>>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// A run this long counts as healthy: the next crash starts the backoff from the beginning.
const STABLE_RUN: Duration = Duration::from_secs(60);

impl Instance {
    /// An instance that is not started yet.
    pub(crate) fn new(
        relay: Arc<Relay>,
        launcher: Arc<Launcher>,
        spec: Arc<StdioSpec>,
        init_params: Option<Value>,
        shutdown: &CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            relay,
            launcher,
            spec,
            init_params,
            handshake: watch::Sender::new(None),
            subscriptions: Mutex::new(HashMap::new()),
            stop: shutdown.child_token(),
            task: Mutex::new(None),
        })
    }

    /// The relay of this instance.
    pub(crate) fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    /// Starts the supervisor unless it runs already.
    pub(crate) fn ensure_started(self: &Arc<Self>) {
        let mut task = self.task.lock().expect("task lock");
        if task.is_none() && !self.stop.is_cancelled() {
            self.relay.set_link(LinkState::Starting);
            *task = Some(tokio::spawn(Arc::clone(self).supervise()));
        }
    }

    /// Waits for the first handshake: the server's initialize result (`{}` for stateless
    /// instances), or why the instance could not start.
    pub(crate) async fn ready(self: &Arc<Self>) -> Result<Value, String> {
        self.ensure_started();
        let mut handshake = self.handshake.subscribe();
        let wait = handshake.wait_for(Option::is_some);
        match tokio::time::timeout(self.spec.startup_timeout + Duration::from_secs(1), wait).await {
            Ok(Ok(outcome)) => outcome.clone().unwrap_or_else(|| Err("no handshake".into())),
            Ok(Err(_)) => Err(format!("backend `{}` stopped", self.relay.backend())),
            Err(_) => {
                Err(format!("backend `{}` did not start within {:?}", self.relay.backend(), self.spec.startup_timeout))
            }
        }
    }

    /// Whether client requests can be served now; an instance never started counts as ready
    /// (it starts on demand).
    pub(crate) fn is_ready(&self) -> bool {
        self.relay.is_idle() || self.relay.is_ready()
    }

    /// Stops the instance and waits until its process or container is gone.
    pub(crate) async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().expect("task lock").take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.relay.set_link(LinkState::Stopped);
    }

    /// Counts one more session subscribed to `uri`; true if the server must be told.
    pub(crate) fn add_subscription(&self, uri: &str) -> bool {
        let mut subscriptions = self.subscriptions.lock().expect("subscriptions lock");
        let count = subscriptions.entry(uri.to_string()).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Counts one session less subscribed to `uri`; true if the server must be told.
    pub(crate) fn remove_subscription(&self, uri: &str) -> bool {
        let mut subscriptions = self.subscriptions.lock().expect("subscriptions lock");
        match subscriptions.get_mut(uri) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                subscriptions.remove(uri);
                true
            }
            None => false,
        }
    }

    async fn supervise(self: Arc<Self>) {
        let backend = self.relay.backend().to_string();
        let mut backoff = FIRST_BACKOFF;
        let mut expiry = tokio::time::interval(Duration::from_secs(1));
        let mut generation = 0u32;
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            // Each start gets a name of its own: a container the engine could not remove
            // (it was away) must not block the next one's name.
            generation += 1;
            let launch_id = format!("{}-{generation}", self.id);
            self.relay.set_link(LinkState::Starting);
            // A launch is not abandoned when a stop arrives meanwhile: dropping it half-way
            // could leave a created container behind. It completes (bounded by the startup
            // timeout), and what it started is stopped properly.
            let launched = tokio::time::timeout(self.spec.startup_timeout, self.launcher.launch(&launch_id)).await;
            if self.stop.is_cancelled() {
                if let Ok(Ok(launched)) = launched {
                    drop(launched.stdin);
                    launched.handle.stop(self.spec.stop_grace).await;
                }
                break;
            }
            let launched = match launched {
                Ok(Ok(launched)) => launched,
                Ok(Err(error)) => {
                    self.start_failed(&format!("backend `{backend}` could not start: {error}"));
                    if !self.pause(&mut backoff).await {
                        break;
                    }
                    continue;
                }
                Err(_) => {
                    self.start_failed(&format!(
                        "backend `{backend}` did not start within {:?}",
                        self.spec.startup_timeout
                    ));
                    if !self.pause(&mut backoff).await {
                        break;
                    }
                    continue;
                }
            };
            let Launched { stdin, stdout, stderr, mut handle } = launched;
            let (writer, outbox) = mpsc::channel::<Bytes>(256);
            let pump_in = tokio::spawn(write_stdin(stdin, outbox));
            let pump_out = tokio::spawn(read_stdout(Arc::clone(&self.relay), stdout, self.spec.max_message_bytes));
            let pump_err = tokio::spawn(log_stderr(backend.clone(), stderr));
            let started = Instant::now();
            self.relay.set_link(LinkState::Handshaking(writer.clone()));
            let handshake = tokio::select! {
                result = self.handshake() => Some(result),
                description = handle.exited() => {
                    Some(Err(format!("backend `{backend}` exited during the handshake: {description}")))
                }
                () = self.stop.cancelled() => None,
            };
            let crashed = match handshake {
                None => None,
                Some(Err(reason)) => Some(reason),
                Some(Ok(result)) => {
                    self.handshake.send_replace(Some(Ok(result)));
                    self.relay.set_link(LinkState::Ready(writer.clone()));
                    tracing::info!(backend, instance = launch_id, "backend ready");
                    loop {
                        tokio::select! {
                            description = handle.exited() => break Some(format!("backend `{backend}` exited: {description}")),
                            () = self.stop.cancelled() => break None,
                            _ = expiry.tick() => {
                                self.relay.expire().await;
                            }
                        }
                    }
                }
            };
            drop(writer);
            match crashed {
                Some(reason) => {
                    tracing::warn!(backend, instance = launch_id, "{reason}; restarting");
                    self.relay.set_link(LinkState::Down);
                    self.relay.fail_all(&reason);
                    if self.handshake.borrow().is_none() {
                        self.handshake.send_replace(Some(Err(reason)));
                    }
                    pump_in.abort();
                    handle.stop(Duration::ZERO).await;
                    pump_out.abort();
                    pump_err.abort();
                    if started.elapsed() >= STABLE_RUN {
                        backoff = FIRST_BACKOFF;
                    }
                    if !self.pause(&mut backoff).await {
                        break;
                    }
                }
                None => {
                    self.relay.set_link(LinkState::Stopped);
                    self.relay.fail_all(&format!("backend `{backend}` is stopping"));
                    // Dropping the last writer ends the stdin pump, which closes stdin: the
                    // server's cue to exit on its own within the grace period.
                    let _ = tokio::time::timeout(Duration::from_secs(1), pump_in).await;
                    handle.stop(self.spec.stop_grace).await;
                    pump_out.abort();
                    pump_err.abort();
                    break;
                }
            }
        }
        self.relay.set_link(LinkState::Stopped);
        if self.handshake.borrow().is_none() {
            self.handshake.send_replace(Some(Err(format!("backend `{backend}` stopped"))));
        }
        tracing::debug!(backend, instance = self.id, "instance stopped");
    }

    fn start_failed(&self, reason: &str) {
        tracing::warn!(backend = self.relay.backend(), "{reason}");
        self.relay.set_link(LinkState::Down);
        if self.handshake.borrow().is_none() {
            self.handshake.send_replace(Some(Err(reason.to_string())));
        }
    }

    /// Sleeps the backoff (doubling it); false if the instance is stopped meanwhile.
    async fn pause(&self, backoff: &mut Duration) -> bool {
        let delay = *backoff;
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.stop.cancelled() => false,
        }
    }

    /// Initializes the server with the cached parameters, then restores subscriptions.
    async fn handshake(&self) -> Result<Value, String> {
        let backend = self.relay.backend().to_string();
        let Some(params) = &self.init_params else {
            return Ok(json!({}));
        };
        let (reply, mut answers) = mpsc::channel(4);
        let request = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params});
        self.relay.request_internal(request, reply).await?;
        let answer = tokio::time::timeout(self.spec.startup_timeout, answers.recv())
            .await
            .map_err(|_| {
                format!("backend `{backend}` did not answer initialize within {:?}", self.spec.startup_timeout)
            })?
            .ok_or_else(|| format!("backend `{backend}` went away during initialize"))?;
        if let Some(error) = answer.get("error") {
            return Err(format!("backend `{backend}` refused initialize: {error}"));
        }
        let result =
            answer.get("result").cloned().ok_or_else(|| format!("backend `{backend}` sent no initialize result"))?;
        self.write_internal(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        let uris: Vec<String> = self.subscriptions.lock().expect("subscriptions lock").keys().cloned().collect();
        for uri in uris {
            let (reply, _discarded) = mpsc::channel(1);
            let request = json!({"jsonrpc": "2.0", "id": 0, "method": "resources/subscribe", "params": {"uri": uri}});
            self.relay.request_internal(request, reply).await?;
        }
        Ok(result)
    }

    async fn write_internal(&self, message: &Value) -> Result<(), String> {
        self.relay.write_internal(message).await
    }
}

/// Most bytes of queued lines gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// Writes queued lines to the server's stdin. Lines queued together (several sessions' requests
/// arriving at once) go out in one write: one system call instead of one per line, and the
/// server can read them in one wake-up (a Node server then answers them in one event-loop turn).
/// berth-bench shows no throughput change at 8 requests in flight, where lines rarely queue.
async fn write_stdin(
    mut stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    mut outbox: mpsc::Receiver<Bytes>,
) {
    let mut batch = Vec::with_capacity(4096);
    while let Some(line) = outbox.recv().await {
        let result = match outbox.try_recv() {
            // The common case under light load: one line, written as it is, no copy.
            Err(_) => stdin.write_all(&line).await,
            Ok(next) => {
                batch.clear();
                batch.extend_from_slice(&line);
                batch.extend_from_slice(&next);
                while batch.len() < WRITE_BATCH {
                    match outbox.try_recv() {
                        Ok(line) => batch.extend_from_slice(&line),
                        Err(_) => break,
                    }
                }
                stdin.write_all(&batch).await
            }
        };
        if result.is_err() || stdin.flush().await.is_err() {
            return;
        }
        if batch.capacity() > 4 * WRITE_BATCH {
            batch = Vec::with_capacity(4096);
        }
    }
    let _ = stdin.shutdown().await;
}

/// Frames the server's stdout and hands each message to the relay.
async fn read_stdout(
    relay: Arc<Relay>,
    mut stdout: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    max: usize,
) {
    let mut framer = LineFramer::new(max);
    while let Some(Ok(chunk)) = stdout.next().await {
        let framed = framer.feed(&chunk);
        if framed.oversized > 0 {
            tracing::warn!(backend = relay.backend(), max, "dropped a message larger than max_message_bytes");
        }
        for line in framed.lines {
            relay.dispatch(&line).await;
        }
    }
}

/// Most stderr lines logged per second per instance; a chatty server cannot flood the log.
const STDERR_LINES_PER_SECOND: u32 = 50;

/// Logs the server's stderr under the backend's name, rate-limited.
async fn log_stderr(backend: String, mut stderr: futures::stream::BoxStream<'static, std::io::Result<Bytes>>) {
    let mut framer = LineFramer::new(8 * 1024);
    let mut window = Instant::now();
    let mut logged = 0u32;
    let mut suppressed = 0u64;
    while let Some(Ok(chunk)) = stderr.next().await {
        for line in framer.feed(&chunk).lines {
            if window.elapsed() >= Duration::from_secs(1) {
                if suppressed > 0 {
                    tracing::info!(backend, suppressed, "stderr lines suppressed by the rate limit");
                }
                window = Instant::now();
                logged = 0;
                suppressed = 0;
            }
            if logged < STDERR_LINES_PER_SECOND {
                logged += 1;
                tracing::info!(backend, "stderr: {}", String::from_utf8_lossy(&line));
            } else {
                suppressed += 1;
            }
        }
    }
}
