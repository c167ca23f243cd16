//! One instance of a stdio server and its supervisor: start, handshake, relay, restart with
//! backoff after a crash, stop.
//!
//! The supervisor task owns the process or container; nothing else starts or stops it. The end
//! of a run — the process exits, closes its stdout, breaks the handshake, or the task reading its
//! stdout fails — answers every in-flight request with an error at once, and the next process
//! is initialized with the same parameters as the first, so that the client sessions on this
//! instance keep working without initializing again.

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use tokio::{
    io::AsyncWriteExt,
    sync::{OwnedSemaphorePermit, mpsc, watch},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::log_level::AtomicLevel;
use super::{
    error::StdioError,
    frame::LineFramer,
    launch::{Launched, Launcher, RunHandle},
    log_limit::LogLimit,
    relay::{LinkState, Relay},
};
use crate::{
    config::StdioSpec,
    jsonrpc::{self, Message},
};

/// The outcome of the first start: the server's initialize answer, or why it failed.
type Handshake = Option<Result<Message, StdioError>>;

/// One instance.
pub(crate) struct Instance {
    id: String,
    relay: Arc<Relay>,
    launcher: Arc<Launcher>,
    spec: Arc<StdioSpec>,
    /// The initialize `params` (raw JSON) used at every start; `None` for an instance that
    /// serves stateless (2026-07-28) clients and is never initialized by berth.
    init_params: Option<String>,
    handshake: watch::Sender<Handshake>,
    /// Resource subscriptions held on the server, with the number of sessions behind each.
    subscriptions: Mutex<HashMap<String, usize>>,
    /// The most verbose log level the server was told (`logging/setLevel`).
    log_level: AtomicLevel,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    /// The `max_instances` slot a per-session instance holds until it stops.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// A run this long counts as healthy: the next crash starts the backoff from the beginning.
const STABLE_RUN: Duration = Duration::from_secs(60);

/// How one run of the process or container ended.
enum RunEnd {
    /// Stopped on purpose.
    Stopped,
    /// It failed; the instance restarts after a backoff.
    Failed(StdioError),
}

/// The tasks pumping one run's stdio.
struct Pumps {
    stdin: JoinHandle<()>,
    stdout: JoinHandle<()>,
    stderr: JoinHandle<()>,
}

impl Pumps {
    fn abort(&self) {
        self.stdin.abort();
        self.stdout.abort();
        self.stderr.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Instance {
    /// An instance that is not started yet; `slot` is released when it stops.
    pub(crate) fn new(
        relay: Arc<Relay>,
        launcher: Arc<Launcher>,
        spec: Arc<StdioSpec>,
        init_params: Option<String>,
        shutdown: &CancellationToken,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Arc<Self> {
        Arc::new(Self {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            relay,
            launcher,
            spec,
            init_params,
            handshake: watch::Sender::new(None),
            subscriptions: Mutex::new(HashMap::new()),
            log_level: AtomicLevel::default(),
            stop: shutdown.child_token(),
            task: Mutex::new(None),
            slot: Mutex::new(slot),
        })
    }

    /// The relay of this instance.
    pub(crate) fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    fn backend(&self) -> String {
        self.relay.backend().to_string()
    }

    /// Starts the supervisor unless it runs already.
    pub(crate) fn ensure_started(self: &Arc<Self>) {
        let mut task = lock(&self.task);
        if task.is_none() && !self.stop.is_cancelled() {
            self.relay.set_link(LinkState::Starting);
            *task = Some(tokio::spawn(Arc::clone(self).supervise()));
        }
    }

    /// Waits for the first handshake: the server's initialize answer (an empty result for
    /// stateless instances), or why the instance could not start.
    pub(crate) async fn ready(self: &Arc<Self>) -> Result<Message, StdioError> {
        self.ensure_started();
        let mut handshake = self.handshake.subscribe();
        let wait = handshake.wait_for(Option::is_some);
        let within = self.spec.startup_timeout.saturating_add(Duration::from_secs(1));
        match tokio::time::timeout(within, wait).await {
            Ok(Ok(outcome)) => outcome.clone().unwrap_or_else(|| Err(StdioError::Stopped(self.backend()))),
            Ok(Err(_)) => Err(StdioError::Stopped(self.backend())),
            Err(_) => Err(StdioError::Starting { backend: self.backend(), within: self.spec.startup_timeout }),
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
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.relay.set_link(LinkState::Stopped);
        self.relay.fail_all(&StdioError::Stopped(self.backend()));
        lock(&self.slot).take();
    }

    /// Counts one more session subscribed to `uri`; true if the server must be told.
    pub(crate) fn add_subscription(&self, uri: &str) -> bool {
        let mut subscriptions = lock(&self.subscriptions);
        let count = subscriptions.entry(uri.to_string()).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// The most verbose log level the server was told.
    pub(crate) fn log_level(&self) -> &AtomicLevel {
        &self.log_level
    }

    /// Counts one session less subscribed to `uri`; true if the server must be told.
    pub(crate) fn remove_subscription(&self, uri: &str) -> bool {
        let mut subscriptions = lock(&self.subscriptions);
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

    /// Runs the instance until it is stopped: run, and after a failure wait the backoff and run
    /// again. A panic in the supervisor itself (a bug) ends that run like a crash, visibly,
    /// rather than leaving the instance looking ready with nobody behind it.
    async fn supervise(self: Arc<Self>) {
        let mut backoff = FIRST_BACKOFF;
        let mut generation = 0u32;
        while !self.stop.is_cancelled() {
            generation += 1;
            let started = Instant::now();
            let end = match AssertUnwindSafe(self.run(generation)).catch_unwind().await {
                Ok(end) => end,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(backend = self.relay.backend(), "the instance's supervisor panicked: {what}");
                    RunEnd::Failed(StdioError::Crashed {
                        backend: self.backend(),
                        reason: "berth's supervisor failed".into(),
                    })
                }
            };
            match end {
                RunEnd::Stopped => break,
                RunEnd::Failed(error) => {
                    self.went_down(&error);
                    if started.elapsed() >= STABLE_RUN {
                        backoff = FIRST_BACKOFF;
                    }
                    if !self.pause(&mut backoff).await {
                        break;
                    }
                }
            }
        }
        self.relay.set_link(LinkState::Stopped);
        self.relay.fail_all(&StdioError::Stopped(self.backend()));
        if self.handshake.borrow().is_none() {
            self.handshake.send_replace(Some(Err(StdioError::Stopped(self.backend()))));
        }
        tracing::debug!(backend = self.relay.backend(), instance = self.id, "instance stopped");
    }

    /// A run ended in failure: in-flight requests get the error, waiting clients the reason.
    fn went_down(&self, error: &StdioError) {
        tracing::warn!(backend = self.relay.backend(), instance = self.id, "{error}; restarting");
        self.relay.stats().failed(&error.to_string());
        self.relay.run_failed(&error.to_string());
        self.relay.set_link(LinkState::Down(error.to_string()));
        self.relay.fail_all(error);
        if self.handshake.borrow().is_none() {
            self.handshake.send_replace(Some(Err(error.clone())));
        }
    }

    /// One run: launch, handshake, serve until the process ends or the instance stops.
    async fn run(&self, generation: u32) -> RunEnd {
        // Each start gets a name of its own: a container the engine could not remove (it was
        // away) must not block the next one's name.
        let launch_id = format!("{}-{generation}", self.id);
        self.relay.set_link(LinkState::Starting);
        let launched_at = Instant::now();
        let Launched { stdin, stdout, stderr, mut handle } = match self.launch(&launch_id).await {
            Ok(Some(launched)) => launched,
            Ok(None) => return RunEnd::Stopped,
            Err(error) => return RunEnd::Failed(error),
        };
        self.relay.run_started(handle.pid(), handle.container_id());
        let (writer, outbox) = mpsc::channel::<Bytes>(256);
        let mut pumps = Pumps {
            stdin: tokio::spawn(write_stdin(stdin, outbox, self.relay.stats().to_server.clone())),
            stdout: tokio::spawn(read_stdout(Arc::clone(&self.relay), stdout, self.spec.max_message_bytes)),
            stderr: tokio::spawn(log_stderr(self.backend(), stderr, Arc::clone(&self.relay.stats().stderr))),
        };
        self.relay.set_link(LinkState::Handshaking(writer.clone()));
        let backend = self.backend();
        let handshake = tokio::select! {
            result = self.handshake() => result.map(Some),
            description = handle.exited() => Err(StdioError::Crashed { backend: backend.clone(), reason: format!("exited during the handshake: {description}") }),
            ended = &mut pumps.stdout => Err(stdout_ended(&backend, ended)),
            () = self.stop.cancelled() => Ok(None),
        };
        let end = match handshake {
            Ok(None) => RunEnd::Stopped,
            Err(error) => RunEnd::Failed(error),
            Ok(Some(init)) => {
                self.handshake.send_replace(Some(Ok(init)));
                self.relay.stats().start_seconds.observe(launched_at.elapsed().as_secs_f64());
                self.relay.set_link(LinkState::Ready(writer.clone()));
                tracing::info!(backend, instance = launch_id, "backend ready");
                self.serve(&mut handle, &mut pumps).await
            }
        };
        drop(writer);
        match &end {
            RunEnd::Failed(_) => {
                pumps.stdin.abort();
                handle.stop(Duration::ZERO).await;
            }
            RunEnd::Stopped => {
                self.relay.set_link(LinkState::Stopped);
                self.relay.fail_all(&StdioError::Stopped(backend));
                // Dropping the last writer ends the stdin pump, which closes stdin: the server's
                // cue to exit on its own within the grace period.
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut pumps.stdin).await;
                handle.stop(self.spec.stop_grace).await;
            }
        }
        pumps.abort();
        end
    }

    /// Starts the process or container within the startup timeout; `None` if the instance was
    /// stopped meanwhile. A launch is not abandoned when a stop arrives: dropping it half-way
    /// could leave a created container behind. It completes (bounded by the startup timeout),
    /// and what it started is stopped properly.
    async fn launch(&self, launch_id: &str) -> Result<Option<Launched>, StdioError> {
        let launched = tokio::time::timeout(self.spec.startup_timeout, self.launcher.launch(launch_id)).await;
        if self.stop.is_cancelled() {
            if let Ok(Ok(launched)) = launched {
                drop(launched.stdin);
                launched.handle.stop(self.spec.stop_grace).await;
            }
            return Ok(None);
        }
        match launched {
            Ok(Ok(launched)) => Ok(Some(launched)),
            Ok(Err(error)) => Err(StdioError::Launch { backend: self.backend(), reason: error.to_string() }),
            Err(_) => Err(StdioError::Launch {
                backend: self.backend(),
                reason: format!("it did not start within {:?}", self.spec.startup_timeout),
            }),
        }
    }

    /// Serves a ready run until the process exits, its stdout or stdin ends, or the instance
    /// stops; times requests out meanwhile.
    async fn serve(&self, handle: &mut RunHandle, pumps: &mut Pumps) -> RunEnd {
        let backend = self.backend();
        let mut expiry = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                description = handle.exited() => {
                    return RunEnd::Failed(StdioError::Crashed { backend, reason: format!("exited: {description}") });
                }
                ended = &mut pumps.stdout => return RunEnd::Failed(stdout_ended(&backend, ended)),
                // The writer only ends early when a write failed: nothing more can reach the
                // server, whatever its process does.
                _ = &mut pumps.stdin => {
                    return RunEnd::Failed(StdioError::Crashed { backend, reason: "its stdin closed".into() });
                }
                () = self.stop.cancelled() => return RunEnd::Stopped,
                _ = expiry.tick() => {
                    self.relay.expire().await;
                }
            }
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
    async fn handshake(&self) -> Result<Message, StdioError> {
        let backend = self.backend();
        let Some(params) = &self.init_params else {
            return Message::parse(jsonrpc::result(b"0", "{}"))
                .map_err(|error| StdioError::Launch { backend, reason: error.to_string() });
        };
        let answer = self.relay.request_internal("initialize", params, self.spec.startup_timeout).await?;
        if let Some(error) = answer.find(&["error"]) {
            return Err(StdioError::Launch {
                backend,
                reason: format!("it refused initialize: {}", answer.raw(&error)),
            });
        }
        match answer.find(&["result"]) {
            Some(result) if answer.raw(&result).starts_with('{') => {}
            _ => {
                return Err(StdioError::BadAnswer { backend, reason: "its initialize result is not an object".into() });
            }
        }
        self.relay.notify_internal(&jsonrpc::notification("notifications/initialized", "{}")).await?;
        let uris: Vec<String> = lock(&self.subscriptions).keys().cloned().collect();
        for uri in uris {
            let params = serde_json::json!({ "uri": uri }).to_string();
            self.relay.request_internal("resources/subscribe", &params, self.spec.startup_timeout).await?;
        }
        Ok(answer)
    }
}

/// Why a run ends when the task reading the server's stdout finished: the server closed its
/// stdout (its end, even if the process lingers), or the task failed.
fn stdout_ended(backend: &str, ended: Result<(), tokio::task::JoinError>) -> StdioError {
    let reason = match ended {
        Ok(()) => "it closed its stdout".to_string(),
        Err(error) if error.is_panic() => "berth's reader of its stdout failed".to_string(),
        Err(_) => "berth's reader of its stdout was stopped".to_string(),
    };
    StdioError::Crashed { backend: backend.to_string(), reason }
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
    written: Counter,
) {
    let mut batch = Vec::with_capacity(4096);
    while let Some(line) = outbox.recv().await {
        let result = match outbox.try_recv() {
            // The common case under light load: one line, written as it is, no copy.
            Err(_) => {
                written.inc();
                stdin.write_all(&line).await
            }
            Ok(next) => {
                batch.clear();
                batch.extend_from_slice(&line);
                batch.extend_from_slice(&next);
                let mut lines = 2;
                while batch.len() < WRITE_BATCH {
                    match outbox.try_recv() {
                        Ok(line) => {
                            batch.extend_from_slice(&line);
                            lines += 1;
                        }
                        Err(_) => break,
                    }
                }
                written.inc_by(lines);
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

/// Frames the server's stdout and hands each message to the relay; returns at the end of
/// stdout (or a read error), which ends the run.
async fn read_stdout(
    relay: Arc<Relay>,
    mut stdout: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    max: usize,
) {
    let mut framer = LineFramer::new(max);
    let oversized = LogLimit::new(Duration::from_secs(60), 1);
    while let Some(Ok(chunk)) = stdout.next().await {
        let framed = framer.feed(&chunk);
        if framed.oversized > 0
            && let Some(suppressed) = oversized.admit("oversized")
        {
            tracing::warn!(
                backend = relay.backend(),
                max,
                suppressed,
                "dropped a message larger than max_message_bytes"
            );
        }
        relay.stats().from_server.inc_by(framed.lines.len() as u64);
        for line in framed.lines {
            relay.dispatch(line).await;
        }
    }
}

/// Most stderr lines logged per second per instance; a chatty server cannot flood the log.
const STDERR_LINES_PER_SECOND: u32 = 50;

/// Logs the server's stderr under the backend's name, rate-limited, and keeps every line in
/// the backend's ring (`GET /api/backends/{name}/logs`).
async fn log_stderr(
    backend: String,
    mut stderr: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    ring: Arc<crate::stdio::StderrLog>,
) {
    let mut framer = LineFramer::new(8 * 1024);
    let limit = LogLimit::new(Duration::from_secs(1), STDERR_LINES_PER_SECOND);
    while let Some(Ok(chunk)) = stderr.next().await {
        for line in framer.feed(&chunk).lines {
            ring.push(&line);
            match limit.admit("stderr") {
                Some(0) => tracing::info!(backend, "stderr: {}", String::from_utf8_lossy(&line)),
                Some(suppressed) => {
                    tracing::info!(backend, suppressed, "stderr lines suppressed by the rate limit");
                    tracing::info!(backend, "stderr: {}", String::from_utf8_lossy(&line));
                }
                None => {}
            }
        }
    }
}
