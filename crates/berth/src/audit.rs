//! The audit log: one JSON line per MCP request, refused login and admin action.
//!
//! The request path never touches the disk, nor, for MCP requests, formats anything:
//! [`AuditLog::defer`] hands the exchange's facts (shared names, the request's own buffer) to a
//! bounded channel with `try_send`, and a dedicated thread serializes and writes what arrives, in
//! batches. The rare events (refused logins, admin actions) are serialized by the caller
//! ([`AuditLog::record`]).
//! When the queue is full or a write fails (a full disk, a file that cannot be opened), the line
//! is dropped and counted (`berth_audit_dropped_total`), and the writer logs the count at most
//! once a minute; berth keeps serving. The file is reopened on SIGUSR1 (after logrotate moved
//! it), or rotated by the writer itself at `max_size`, keeping `keep` older files.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use crate::config::{AuditSpec, AuditTarget};

/// Lines queued for the writer at most; beyond, lines are dropped rather than block a request.
const QUEUE: usize = 8192;
/// How long the writer rests after writing a batch. Lines arriving meanwhile wait in the queue
/// (8192 of them fit, far more than berth serves in that time) and go out together: a busy
/// berth pays one write a rest, not one per request, and a request never wakes the writer.
const REST: Duration = Duration::from_millis(50);
/// How often the writer logs that lines were dropped, at most.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// One audit line. Absent facts are `null`, so every line has every field.
#[derive(Debug, Default, Serialize)]
pub(crate) struct AuditEvent<'a> {
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    pub(crate) ts: String,
    /// `mcp_request`, `login_refused` or `admin_request`.
    pub(crate) event: &'static str,
    /// The authenticated user, or the name a refused login gave.
    pub(crate) user: Option<&'a str>,
    /// The client's address (behind a trusted proxy, the client it speaks for).
    pub(crate) client_addr: Option<String>,
    /// The backend.
    pub(crate) backend: Option<&'a str>,
    /// The `Mcp-Session-Id`.
    pub(crate) session: Option<&'a str>,
    /// The JSON-RPC method (`batch` for a batch, the HTTP method for `GET` and `DELETE`, the
    /// path on the admin listener).
    pub(crate) method: Option<&'a str>,
    /// The tool or prompt name, or the resource URI.
    pub(crate) name: Option<&'a str>,
    /// `ok`, `error` (a JSON-RPC error answer) or `refused` (berth answered itself).
    pub(crate) outcome: &'static str,
    /// The HTTP status.
    pub(crate) status: u16,
    /// From the request to the end of the answer.
    pub(crate) duration_ms: Option<u64>,
    /// The request body's size.
    pub(crate) request_bytes: Option<u64>,
    /// The answer body's size.
    pub(crate) response_bytes: Option<u64>,
    /// The listener of a refused login (`mcp` or `admin`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) listener: Option<&'static str>,
    /// `tools/call` arguments, only with `[audit] arguments = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) arguments: Option<&'a serde_json::value::RawValue>,
}

/// The facts of an event that the writer thread turns into its line: what the request path
/// holds anyway (shared names, the request's bytes), moved rather than formatted, so that
/// serialization costs the request nothing.
pub(crate) trait Facts: Send + 'static {
    /// Writes the event's JSON object (without the newline) to `out`.
    fn write_json(&self, out: &mut Vec<u8>);
}

/// What the writer thread is sent.
enum Message {
    Line(Vec<u8>),
    Facts(Box<dyn Facts>),
    /// Write everything queued before, then answer.
    Flush(std::sync::mpsc::Sender<()>),
}

/// The handle the request path records through.
#[derive(Debug)]
pub(crate) struct AuditLog {
    sender: SyncSender<Message>,
    dropped: Counter,
    arguments: bool,
    reopen: Arc<AtomicBool>,
    is_file: bool,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

impl AuditLog {
    /// Starts the writer thread for `spec`; drops are counted in `dropped`.
    pub(crate) fn start(spec: &AuditSpec, dropped: Counter) -> Arc<Self> {
        let (sender, receiver) = sync_channel(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            sink: Sink::new(spec),
            max_size: spec.max_size,
            keep: spec.keep,
            dropped: dropped.clone(),
            reopen: Arc::clone(&reopen),
            logged_drops: 0,
            last_drop_log: None,
        };
        let spawned = std::thread::Builder::new().name("berth-audit".into()).spawn(move || writer.run(receiver));
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start the audit writer: audit lines will be dropped");
        }
        Arc::new(Self {
            sender,
            dropped,
            arguments: spec.arguments,
            reopen,
            is_file: matches!(spec.target, AuditTarget::File(_)),
        })
    }

    /// Whether `tools/call` arguments are written.
    pub(crate) fn with_arguments(&self) -> bool {
        self.arguments
    }

    /// Queues one line; never blocks.
    pub(crate) fn record(&self, event: &AuditEvent<'_>) {
        let Ok(mut line) = serde_json::to_vec(event) else { return };
        line.push(b'\n');
        match self.sender.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }

    /// Queues the facts of one line, serialized by the writer; never blocks.
    pub(crate) fn defer(&self, facts: Box<dyn Facts>) {
        if self.sender.try_send(Message::Facts(facts)).is_err() {
            self.dropped.inc();
        }
    }

    /// Asks the writer to reopen the file before its next write (SIGUSR1).
    pub(crate) fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// Whether the log is a file, which SIGUSR1 reopens.
    pub(crate) fn is_file(&self) -> bool {
        self.is_file
    }

    /// Waits (at most `within`) until every line queued so far is written; at shutdown.
    pub(crate) fn flush(&self, within: Duration) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.sender.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(within);
        }
    }
}

/// Where the writer writes.
enum Sink {
    Stderr,
    File { path: PathBuf, file: Option<File>, size: u64 },
}

impl Sink {
    fn new(spec: &AuditSpec) -> Self {
        match &spec.target {
            AuditTarget::Stderr => Self::Stderr,
            AuditTarget::File(path) => Self::File { path: path.clone(), file: None, size: 0 },
        }
    }
}

/// Opens `path` for appending, creating it (mode 0600: audit lines name users).
fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((file, size))
}

/// How many bytes of whole lines at the start of `batch` fit in `room`.
fn whole_lines_within(batch: &[u8], room: u64) -> usize {
    let limit = usize::try_from(room).unwrap_or(usize::MAX).min(batch.len());
    if limit == batch.len() {
        return limit;
    }
    batch[..limit].iter().rposition(|b| *b == b'\n').map_or(0, |n| n + 1)
}

/// `audit.log` → `audit.log.1` → … → `audit.log.<keep>` (the oldest removed).
fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    let numbered = |n: usize| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    std::fs::rename(path, numbered(1))
}

struct Writer {
    sink: Sink,
    max_size: Option<u64>,
    keep: usize,
    dropped: Counter,
    reopen: Arc<AtomicBool>,
    logged_drops: u64,
    last_drop_log: Option<Instant>,
}

impl Writer {
    fn run(mut self, receiver: Receiver<Message>) {
        let mut batch = Vec::with_capacity(64 * 1024);
        loop {
            let first = match receiver.recv_timeout(Duration::from_secs(1)) {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut flushes = Vec::new();
            let mut lines = 0u64;
            for message in first.into_iter().chain(std::iter::from_fn(|| receiver.try_recv().ok())) {
                match message {
                    Message::Line(line) => {
                        batch.extend_from_slice(&line);
                        lines += 1;
                    }
                    Message::Facts(facts) => {
                        facts.write_json(&mut batch);
                        batch.push(b'\n');
                        lines += 1;
                    }
                    Message::Flush(done) => flushes.push(done),
                }
                if batch.len() >= 256 * 1024 {
                    break;
                }
            }
            if !batch.is_empty() {
                if let Err(error) = self.write(&batch) {
                    self.dropped.inc_by(lines);
                    self.note_drops(Some(&error));
                }
                batch.clear();
            }
            self.note_drops(None);
            let flushed = !flushes.is_empty();
            for done in flushes {
                let _ = done.send(());
            }
            if lines > 0 && !flushed {
                std::thread::sleep(REST);
            }
        }
    }

    /// Writes one batch of whole lines, reopening the file first after SIGUSR1, and rotating it
    /// whenever the next lines would take it beyond `max_size` (a single longer line gets a
    /// file of its own).
    fn write(&mut self, batch: &[u8]) -> std::io::Result<()> {
        let reopen = self.reopen.swap(false, Ordering::Relaxed);
        let (max_size, keep) = (self.max_size, self.keep);
        match &mut self.sink {
            Sink::Stderr => std::io::stderr().lock().write_all(batch),
            Sink::File { path, file, size } => {
                if reopen {
                    *file = None;
                }
                let mut rest = batch;
                while !rest.is_empty() {
                    if file.is_none() {
                        let (opened, length) = open_append(path)?;
                        *file = Some(opened);
                        *size = length;
                    }
                    let room = max_size.map_or(u64::MAX, |max| max.saturating_sub(*size));
                    let take = whole_lines_within(rest, room);
                    if take == 0 && *size > 0 {
                        *file = None;
                        if let Err(error) = rotate(path, keep) {
                            tracing::warn!(path = %path.display(), %error, "could not rotate the audit log");
                            // Keep appending rather than lose lines: the file outgrows max_size.
                            let (opened, length) = open_append(path)?;
                            *file = Some(opened);
                            *size = length;
                            let Some(open) = file.as_mut() else { return Ok(()) };
                            return open.write_all(rest).inspect(|()| *size += rest.len() as u64);
                        }
                        continue;
                    }
                    // An empty file takes at least one line, however long.
                    let take = if take == 0 {
                        rest.iter().position(|b| *b == b'\n').map_or(rest.len(), |n| n + 1)
                    } else {
                        take
                    };
                    let Some(open) = file.as_mut() else { return Ok(()) };
                    if let Err(error) = open.write_all(&rest[..take]) {
                        // Opened again at the next batch: the disk may have room by then.
                        *file = None;
                        return Err(error);
                    }
                    *size += take as u64;
                    rest = &rest[take..];
                }
                Ok(())
            }
        }
    }

    /// Logs the lines dropped since the last report, at most once a minute.
    fn note_drops(&mut self, error: Option<&std::io::Error>) {
        let total = self.dropped.get();
        if total == self.logged_drops {
            return;
        }
        if self.last_drop_log.is_some_and(|at| at.elapsed() < DROP_LOG_INTERVAL) {
            return;
        }
        let error = error.map(ToString::to_string).unwrap_or_else(|| "queue full or write failed".into());
        tracing::warn!(dropped = total - self.logged_drops, total, %error, "audit lines dropped");
        self.logged_drops = total;
        self.last_drop_log = Some(Instant::now());
    }
}

/// `time` as RFC 3339 UTC with milliseconds: `2026-12-02T18:26:34.123Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let table = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (1_796_235_994, "2026-12-02T18:26:34.000Z"),
        ];
        for (secs, expected) in table {
            assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), expected);
        }
    }

    #[test]
    fn batches_split_at_whole_lines() {
        let table: &[(&[u8], u64, usize)] =
            &[(b"ab\ncd\n", 100, 6), (b"ab\ncd\n", 5, 3), (b"ab\ncd\n", 2, 0), (b"ab\ncd\n", 6, 6)];
        for (batch, room, expected) in table {
            assert_eq!(whole_lines_within(batch, *room), *expected, "{batch:?} in {room}");
        }
    }

    #[test]
    fn rotation_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        for n in 0..4 {
            std::fs::write(&path, format!("{n}")).unwrap();
            rotate(&path, 2).unwrap();
        }
        assert!(!path.exists());
        assert_eq!(std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap(), "3");
        assert_eq!(std::fs::read_to_string(dir.path().join("audit.log.2")).unwrap(), "2");
        assert!(!dir.path().join("audit.log.3").exists());
    }
}
