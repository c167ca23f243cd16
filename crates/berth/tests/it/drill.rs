//! The misbehaviour drill: the real `berth` binary, run as a subprocess with its log captured
//! (`RUST_LOG=info`), serves a well-behaved fixture backend (`good`) beside backends of
//! `berth-fixture-stdio` that misbehave (see its doc: the `misbehave` tool and
//! `FIXTURE_MISBEHAVE`), shared and per-session, driven over real HTTP.
//!
//! Every test is one misbehaviour, and checks what the gateway owes its clients whatever a
//! server does: the other sessions and the good backend are served throughout; clients get
//! JSON-RPC errors, never a hang (every wait has a one-minute hang guard; nothing is timed);
//! an instance is restarted where needed; each cause is logged a bounded number of times; the
//! RSS stays bounded (berth never buffers more than `max_message_bytes` of one line); and
//! SIGTERM ends berth with status 0 and no fixture process left behind.
//!
//! A test does not stop at its first broken expectation: it records each one, goes on, and
//! fails at the end with the whole list, so that one run shows everything a misbehaviour
//! breaks.

use std::{
    fs::File,
    future::Future,
    io::{BufRead, BufReader},
    sync::Arc,
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    harness::{config_with, fixture_binary, unique_name},
    process::{Served, berth_command, is_alive, tagged_processes},
    raw::RawSession,
    wait::{HANG_GUARD, poll},
};
/// Most log lines one backend may cause in its first ten seconds of logging, whatever it does
/// (a 1,000,000-line flood included).
const LOG_BOUND: usize = 500;
/// Most log lines per second one backend may cause past that: berth rate-limits a cause at
/// 50 lines a second plus one "suppressed" summary, and a flood that a busy machine needs
/// longer than ten seconds to read is still bounded by its rate, not by its length.
const LOG_RATE_BOUND: f64 = 60.0;
/// Most memory berth may ever have held (VmHWM), in KiB, after 50 MB lines and floods.
const RSS_BOUND_KIB: u64 = 200 * 1024;
/// berth's id for the JSON-RPC errors of a failed backend (`jsonrpc.rs`).
const BACKEND_ERROR: i64 = -32000;
/// berth's id for a request that timed out without an answer.
const TIMEOUT: i64 = -32001;

/// What berth's log says about one backend.
#[derive(Clone, Default)]
struct BackendLog {
    /// Lines that mention it.
    count: usize,
    /// Up to three of them (not `backend ready`).
    samples: Vec<String>,
    /// The time of day of the first and the last of them, in seconds.
    first: Option<f64>,
    last: Option<f64>,
}

/// The time of day, in seconds, of a log line that starts with an RFC 3339 UTC timestamp
/// (`2026-12-04T08:13:58.251588Z …`, tracing's format).
fn seconds_of_day(line: &str) -> Option<f64> {
    let time = line.get(11..26)?;
    let (hours, rest) = time.split_once(':')?;
    let (minutes, seconds) = rest.split_once(':')?;
    Some(hours.parse::<f64>().ok()? * 3600.0 + minutes.parse::<f64>().ok()? * 60.0 + seconds.parse::<f64>().ok()?)
}

/// One backend of the fixture.
struct Fixture {
    name: &'static str,
    per_session: bool,
    /// `FIXTURE_MISBEHAVE`.
    misbehave: &'static str,
    /// Timeouts under the hang guard (50 s) instead of short ones (5 s for requests, 3 s for
    /// start-ups, so that failures show quickly): for floods, which a debug build on a busy
    /// machine needs seconds to read even when it logs nothing, so that what fails is what
    /// berth does with the flood rather than how fast.
    patient: bool,
}

const fn shared(name: &'static str, misbehave: &'static str) -> Fixture {
    Fixture { name, per_session: false, misbehave, patient: false }
}

const fn solo(name: &'static str, misbehave: &'static str) -> Fixture {
    Fixture { name, per_session: true, misbehave, patient: false }
}

/// A berth subprocess and the expectations it broke so far.
struct Drill {
    berth: Served,
    pid: u32,
    /// Every fixture process of this drill carries `DRILL_TAG=<tag>` in its environment.
    tag: String,
    backends: Vec<&'static str>,
    failures: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drill {
    /// Starts berth with `good` and `fixtures`, and waits until it listens.
    async fn start(fixtures: &[Fixture]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tag = unique_name("drill");
        let command = fixture_binary();
        let good = shared("good", "");
        let mut backends = String::new();
        for fixture in std::iter::once(&good).chain(fixtures) {
            backends.push_str(&format!(
                "[backends.{name}]\nkind = \"process\"\ncommand = \"{command}\"\n\
                 request_timeout = \"{request}\"\nstartup_timeout = \"{startup}\"\nstop_grace = \"1s\"\n\
                 env = {{ DRILL_TAG = \"{tag}\", FIXTURE_MISBEHAVE = \"{misbehave}\" }}\n{sharing}\n",
                name = fixture.name,
                command = command.display(),
                misbehave = fixture.misbehave,
                sharing = if fixture.per_session { "sharing = \"per-session\"\n" } else { "" },
                request = if fixture.patient { "50s" } else { "5s" },
                startup = if fixture.patient { "50s" } else { "3s" },
            ));
        }
        let config = dir.path().join("berth.toml");
        std::fs::write(&config, format!("[server]\nshutdown_grace = \"5s\"\n\n{}", config_with(&backends))).unwrap();
        let mut command = berth_command();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            // A panic with a backtrace makes the process symbolize it, which loads the debug
            // info and costs 150 MiB of RSS: the panic is reported from the log, the RSS must
            // measure berth's own buffering.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE");
        let berth = Served::spawn(command, dir.path().join("berth.log")).await;
        let pid = berth.child.id().unwrap();
        Self {
            berth,
            pid,
            tag,
            backends: std::iter::once(&good).chain(fixtures).map(|f| f.name).collect(),
            failures: Vec::new(),
            _dir: dir,
        }
    }

    fn url(&self, backend: &str) -> String {
        format!("http://{}/{backend}/mcp", self.berth.addr)
    }

    /// Records a broken expectation.
    fn fail(&mut self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("drill: FAILED: {what}");
        self.failures.push(what);
    }

    fn expect(&mut self, holds: bool, what: impl FnOnce() -> String) {
        if !holds {
            self.fail(what());
        }
    }

    /// The value of a guarded step, or `None` after recording why there is none.
    fn record<T>(&mut self, outcome: Result<T, String>) -> Option<T> {
        outcome.map_err(|reason| self.fail(reason)).ok()
    }

    /// Opens a session on `backend`, which must succeed.
    async fn open(&mut self, backend: &str) -> Option<Arc<RawSession>> {
        match self.try_open(backend).await? {
            Ok(session) => Some(session),
            Err((status, body)) => {
                self.fail(format!("initialize on `{backend}` was refused: {status} {body}"));
                None
            }
        }
    }

    /// Opens a session on `backend`, or answers its refusal; `None` after a hang.
    async fn try_open(&mut self, backend: &str) -> Option<Result<Arc<RawSession>, (StatusCode, Value)>> {
        let url = self.url(backend);
        let outcome = guard(format!("initialize on `{backend}`"), async move {
            RawSession::try_open(&url, json!({})).await.map(Arc::new)
        })
        .await;
        self.record(outcome)
    }

    /// Calls `echo` on `session` and expects its text back.
    async fn echo(&mut self, backend: &str, session: &Arc<RawSession>, step: &str) {
        let text = format!("{backend}: {step}");
        let response = call(session, &format!("echo on `{backend}` {step}"), "echo", json!({"text": text})).await;
        if let Some(response) = self.record(response) {
            self.expect(text_of(&response) == Some(text.as_str()), || {
                format!("echo on `{backend}` {step}: expected the text back, got {response}")
            });
        }
    }

    /// The good backend serves a new session, and every bystander is still served.
    async fn still_served(&mut self, step: &str, bystanders: &[(&str, &Arc<RawSession>)]) {
        if let Some(fresh) = self.open("good").await {
            self.echo("good", &fresh, &format!("(a new session) {step}")).await;
        }
        for (backend, session) in bystanders {
            self.echo(backend, session, &format!("(a bystander) {step}")).await;
        }
    }

    /// Calls `misbehave` and expects its usual answer.
    async fn misbehave_answered(&mut self, backend: &str, session: &Arc<RawSession>, arguments: Value) {
        let what = arguments["what"].as_str().unwrap_or_default().to_string();
        let response = call(session, &format!("misbehave {arguments} on `{backend}`"), "misbehave", arguments).await;
        if let Some(response) = self.record(response) {
            let expected = format!("misbehaved: {what}");
            self.expect(text_of(&response) == Some(expected.as_str()), || {
                format!("misbehave {what} on `{backend}`: expected the call answered ({expected}), got {response}")
            });
        }
    }

    /// The pid of the instance serving `session`.
    async fn pid(&mut self, backend: &str, session: &Arc<RawSession>, step: &str) -> Option<u32> {
        let response = call(session, &format!("pid on `{backend}` {step}"), "pid", json!({})).await;
        let response = self.record(response)?;
        let pid = text_of(&response).and_then(|t| t.parse().ok());
        self.expect(pid.is_some(), || format!("pid on `{backend}` {step}: no pid in {response}"));
        pid
    }

    /// Reads the log once: per backend, the lines that mention it (and samples of them), and
    /// the lines that report a panic.
    fn log_report(&self) -> (Vec<BackendLog>, Vec<String>) {
        let mut per_backend: Vec<BackendLog> = vec![BackendLog::default(); self.backends.len()];
        let mut panics: Vec<String> = Vec::new();
        let file = File::open(&self.berth.log).unwrap();
        let mut after_panic = false;
        for line in BufReader::new(file).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            // A panic's message is on the line after `panicked at <place>:`.
            if after_panic && let Some(last) = panics.last_mut() {
                last.push(' ');
                last.push_str(&line);
            }
            after_panic = line.contains("panicked at") && panics.len() < 5;
            if after_panic {
                panics.push(line.to_string());
            }
            if line.contains("berth listening on") {
                continue;
            }
            for (index, name) in self.backends.iter().enumerate() {
                if line.contains(&format!("\"{name}\"")) || line.contains(&format!("`{name}`")) {
                    let entry = &mut per_backend[index];
                    entry.count += 1;
                    if let Some(at) = seconds_of_day(&line) {
                        entry.first.get_or_insert(at);
                        entry.last = Some(at);
                    }
                    if entry.samples.len() < 3 && !line.contains("backend ready") {
                        entry.samples.push(line.chars().take(300).collect());
                    }
                }
            }
        }
        (per_backend, panics)
    }

    /// Each backend caused at most `LOG_BOUND` log lines; those of `noticed` at least one line
    /// that is not `backend ready` (berth saw the cause); no panic is logged.
    fn check_log(&mut self, noticed: &[&str]) {
        let (per_backend, panics) = self.log_report();
        let backends = self.backends.clone();
        for (name, BackendLog { count, samples, first, last }) in backends.iter().zip(per_backend) {
            let span = match (first, last) {
                (Some(first), Some(last)) => (last - first).rem_euclid(86_400.0),
                _ => 0.0,
            };
            // Whole seconds rounded up: a window that has begun may log its full quota.
            let bound = LOG_BOUND.max((LOG_RATE_BOUND * (span.ceil() + 1.0)) as usize);
            self.expect(count <= bound, || {
                format!(
                    "backend `{name}` caused {count} log lines in {span:.1} s (at most {bound}: {LOG_BOUND}, or {LOG_RATE_BOUND} a second); e.g. {samples:?}"
                )
            });
            self.expect(!noticed.contains(name) || !samples.is_empty(), || {
                format!("berth logged nothing about what backend `{name}` did")
            });
        }
        self.expect(panics.is_empty(), || format!("berth's log reports a panic: {panics:?}"));
    }

    /// berth never held more than `RSS_BOUND_KIB`.
    fn check_rss(&mut self) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse().ok())
        };
        let (hwm, rss): (Option<u64>, Option<u64>) = (field("VmHWM:"), field("VmRSS:"));
        eprintln!("drill: berth VmHWM {hwm:?} KiB, VmRSS {rss:?} KiB");
        match hwm {
            Some(hwm) => self.expect(hwm <= RSS_BOUND_KIB, || {
                format!(
                    "berth's RSS peaked at {} MiB (VmHWM; at most {} MiB; VmRSS now {:?} KiB)",
                    hwm / 1024,
                    RSS_BOUND_KIB / 1024,
                    rss
                )
            }),
            None => self.fail("berth's /proc status is unreadable: did it die?"),
        }
    }

    /// Checks the log and the RSS, then SIGTERM: berth exits 0 and leaves no fixture process
    /// behind. Fails the test with every broken expectation.
    async fn finish(mut self, noticed: &[&str]) {
        self.check_log(noticed);
        self.check_rss();
        let before: Vec<u32> = tagged(&self.tag);
        eprintln!("drill: fixture processes before SIGTERM: {before:?}");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        match tokio::time::timeout(HANG_GUARD, self.berth.child.wait()).await {
            Ok(Ok(status)) => {
                self.expect(status.code() == Some(0), || format!("berth exited with {status} after SIGTERM"))
            }
            Ok(Err(error)) => self.fail(format!("waiting for berth failed: {error}")),
            Err(_) => self.fail("berth did not exit within a minute of SIGTERM (hang)"),
        }
        let left = poll(Duration::from_secs(5), || {
            let left = tagged(&self.tag);
            std::future::ready(if left.is_empty() { Ok(()) } else { Err(left) })
        })
        .await;
        if let Err(left) = left {
            self.fail(format!("fixture processes left behind after berth exited: {left:?}"));
        }
        let (per_backend, _) = self.log_report();
        let counts: Vec<String> =
            self.backends.iter().zip(&per_backend).map(|(n, log)| format!("{n}: {}", log.count)).collect();
        eprintln!("drill: log lines per backend: {}", counts.join(", "));
        if !self.failures.is_empty() {
            let tail = tail_of(&self.berth.log, 30);
            panic!(
                "{} broken expectation(s):\n- {}\n\nthe end of berth's log:\n{tail}",
                self.failures.len(),
                self.failures.join("\n- ")
            );
        }
    }
}

impl Drop for Drill {
    fn drop(&mut self) {
        // After a panic in the test itself: berth dies with the child handle (kill_on_drop),
        // and its fixtures, each in a process group of its own, are killed here.
        let _ = self.berth.child.start_kill();
        for pid in tagged(&self.tag) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Runs `future` in a task of its own, within the hang guard; a panic (such as the raw client's
/// own guard) or a hang becomes the reason.
async fn guard<T: Send + 'static>(what: String, future: impl Future<Output = T> + Send + 'static) -> Result<T, String> {
    match tokio::time::timeout(HANG_GUARD, tokio::spawn(future)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            let reason = match error.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
                Err(error) => error.to_string(),
            };
            Err(format!("{what}: {reason}"))
        }
        Err(_) => Err(format!("{what}: no answer within {HANG_GUARD:?} (hang)")),
    }
}

/// Calls a tool and answers the response (the messages before it are skipped).
async fn call(session: &Arc<RawSession>, what: &str, name: &str, arguments: Value) -> Result<Value, String> {
    let session = Arc::clone(session);
    let message = json!({"jsonrpc": "2.0", "id": what, "method": "tools/call",
        "params": {"name": name, "arguments": arguments}});
    let id = message["id"].clone();
    let response = guard(what.to_string(), async move { session.send(message).await.response().await }).await?;
    if response["id"] != id {
        return Err(format!("{what}: the response carries another id: {response}"));
    }
    Ok(response)
}

/// Calls `progress {steps, ms}` from a task of its own; answers every message of the call.
fn progress(session: &Arc<RawSession>, steps: u64, ms: u64) -> tokio::task::JoinHandle<Result<Vec<Value>, String>> {
    let session = Arc::clone(session);
    let message = json!({"jsonrpc": "2.0", "id": "long", "method": "tools/call", "params": {"name": "progress",
        "arguments": {"steps": steps, "ms": ms}, "_meta": {"progressToken": "long"}}});
    tokio::spawn(guard(format!("progress {steps}×{ms} ms"), async move { session.send(message).await.all().await }))
}

/// Checks the messages of a `progress` call: every step, then the result.
fn check_progress(
    drill: &mut Drill,
    backend: &str,
    steps: u64,
    outcome: Result<Result<Vec<Value>, String>, tokio::task::JoinError>,
) {
    let Some(mut messages) = drill.record(outcome.map_err(|e| e.to_string()).and_then(|o| o)) else { return };
    let last = messages.pop().unwrap_or(Value::Null);
    let expected = format!("{steps} steps");
    drill.expect(text_of(&last) == Some(expected.as_str()), || {
        format!("the long progress call on `{backend}` ended with {last} instead of its result")
    });
    let seen = messages.iter().filter(|m| m["method"] == "notifications/progress").count() as u64;
    drill.expect(seen == steps, || {
        format!("the long progress call on `{backend}` got {seen} of {steps} progress notifications")
    });
}

/// The sessions of `sessions` that did open, with their backends: the bystanders of a step.
fn opened<'a>(sessions: &[(&'a str, &'a Option<Arc<RawSession>>)]) -> Vec<(&'a str, &'a Arc<RawSession>)> {
    sessions.iter().filter_map(|(name, session)| Some((*name, session.as_ref()?))).collect()
}

fn text_of(response: &Value) -> Option<&str> {
    response.pointer("/result/content/0/text").and_then(Value::as_str)
}

/// The live processes whose environment holds `DRILL_TAG=<tag>`.
fn tagged(tag: &str) -> Vec<u32> {
    tagged_processes(&format!("DRILL_TAG={tag}"))
}

fn tail_of(path: &std::path::Path, lines: usize) -> String {
    let file = File::open(path).unwrap();
    let mut tail = std::collections::VecDeque::with_capacity(lines);
    for line in BufReader::new(file).split(b'\n').map_while(Result::ok) {
        if tail.len() == lines {
            tail.pop_front();
        }
        tail.push_back(String::from_utf8_lossy(&line).chars().take(300).collect::<String>());
    }
    Vec::from(tail).join("\n")
}

/// Invalid JSON, binary garbage, invalid UTF-8 and non-JSON-RPC lines between valid ones: on
/// demand (while a long call with progress is in flight on the same instance), and before
/// every line a server writes, `initialize`'s answer included. berth skips them and answers.
#[tokio::test]
async fn junk_between_valid_lines_is_skipped() {
    let mut drill =
        Drill::start(&[shared("junk", ""), solo("junk-solo", ""), shared("noisy", "junk"), solo("noisy-solo", "junk")])
            .await;
    let good = drill.open("good").await;
    let bystander = drill.open("junk").await;
    for backend in ["noisy", "noisy-solo"] {
        if let Some(session) = drill.open(backend).await {
            drill.echo(backend, &session, "through junk").await;
        }
    }
    let long = bystander.as_ref().map(|s| progress(s, 16, 500));
    for backend in ["junk", "junk-solo"] {
        if let Some(victim) = drill.open(backend).await {
            drill.misbehave_answered(backend, &victim, json!({"what": "junk", "rounds": 3})).await;
            drill.echo(backend, &victim, "after junk").await;
        }
    }
    let bystanders = opened(&[("good", &good), ("junk", &bystander)]);
    drill.still_served("after junk", &bystanders).await;
    if let Some(long) = long {
        let outcome = long.await;
        check_progress(&mut drill, "junk", 16, outcome);
    }
    drill.finish(&["junk", "junk-solo", "noisy", "noisy-solo"]).await;
}

/// A single 50 MB line (over the 16 MiB `max_message_bytes`), on demand while other sessions
/// are served, and before `initialize` is answered: dropped and logged, without berth ever
/// holding it; the server's next lines are served.
#[tokio::test]
async fn a_50_mb_line_is_dropped_without_being_buffered() {
    let mut drill =
        Drill::start(&[shared("huge", ""), solo("huge-solo", ""), shared("huge-start", "huge=50000000")]).await;
    let good = drill.open("good").await;
    let bystander = drill.open("huge").await;
    for backend in ["huge", "huge-solo"] {
        if let Some(victim) = drill.open(backend).await {
            let arguments = json!({"what": "huge", "bytes": 50_000_000});
            let what = format!("misbehave huge on `{backend}`");
            let pending = {
                let victim = Arc::clone(&victim);
                tokio::spawn(async move { call(&victim, &what, "misbehave", arguments).await })
            };
            let bystanders = opened(&[("good", &good), ("huge", &bystander)]);
            drill.still_served(&format!("while `{backend}` writes 50 MB"), &bystanders).await;
            if let Some(response) = drill.record(pending.await.map_err(|e| e.to_string()).and_then(|r| r)) {
                drill.expect(text_of(&response) == Some("misbehaved: huge"), || {
                    format!("misbehave huge on `{backend}`: expected the call answered after the line, got {response}")
                });
            }
            drill.echo(backend, &victim, "after 50 MB").await;
        }
    }
    if let Some(session) = drill.open("huge-start").await {
        drill.echo("huge-start", &session, "after a 50 MB line before initialize").await;
    }
    drill.finish(&["huge", "huge-solo", "huge-start"]).await;
}

/// A server that closes its stdout and lives on: the end of stdout is the end of the instance.
/// The call in flight fails at once with a backend error (not a timeout), the process is
/// killed, and the next call is answered by a new process.
#[tokio::test]
async fn stdout_closed_while_running_ends_the_instance() {
    let mut drill = Drill::start(&[shared("mute", ""), solo("mute-solo", "")]).await;
    let good = drill.open("good").await;
    let bystander = drill.open("mute").await;
    let mut old = Vec::new();
    for backend in ["mute", "mute-solo"] {
        let Some(victim) = drill.open(backend).await else { continue };
        let Some(before) = drill.pid(backend, &victim, "before stdout closes").await else { continue };
        old.push((backend, before));
        let response = call(
            &victim,
            &format!("misbehave close-stdout on `{backend}`"),
            "misbehave",
            json!({"what": "close-stdout"}),
        )
        .await;
        if let Some(response) = drill.record(response) {
            let code = response.pointer("/error/code").and_then(Value::as_i64);
            drill.expect(code == Some(BACKEND_ERROR), || {
                let timed_out = if code == Some(TIMEOUT) { " (it waited the whole request_timeout)" } else { "" };
                format!("the call in flight when `{backend}` closed stdout: expected a {BACKEND_ERROR} error at once, got {response}{timed_out}")
            });
        }
        if let Some(after) = drill.pid(backend, &victim, "after stdout closed").await {
            drill.expect(after != before, || {
                format!("`{backend}`: the same process {before} answered after closing stdout?")
            });
        }
        drill.echo(backend, &victim, "after stdout closed").await;
    }
    let bystanders = opened(&[("good", &good), ("mute", &bystander)]);
    drill.still_served("after stdout closed", &bystanders).await;
    let stopped = poll(HANG_GUARD, || {
        let alive: Vec<(&str, u32)> = old.iter().copied().filter(|(_, pid)| is_alive(*pid)).collect();
        std::future::ready(if alive.is_empty() { Ok(()) } else { Err(alive) })
    })
    .await;
    for (backend, pid) in stopped.err().unwrap_or_default() {
        drill.fail(format!(
            "`{backend}`: process {pid} closed its stdout and was still running a minute later (never noticed)"
        ));
    }
    drill.finish(&["mute", "mute-solo"]).await;
}

/// An `initialize` the server never answers: every client's initialize gets a JSON-RPC error
/// (503) after the startup timeout, never a hang, shared or per-session, again and again.
#[tokio::test]
async fn an_initialize_never_answered_is_a_json_rpc_error() {
    let mut drill = Drill::start(&[shared("silent", "init-silent"), solo("silent-solo", "init-silent")]).await;
    let good = drill.open("good").await;
    for backend in ["silent", "silent-solo"] {
        for attempt in 1..=2 {
            refused_with_json_rpc_error(&mut drill, backend, attempt, true).await;
        }
    }
    let bystanders = opened(&[("good", &good)]);
    drill.still_served("after unanswered initializes", &bystanders).await;
    drill.finish(&["silent", "silent-solo"]).await;
}

/// Expects initialize on `backend` refused with a JSON-RPC error carrying its id, not a 500;
/// with `strict` false, a JSON-RPC answer of any kind (the server's own result) is accepted.
async fn refused_with_json_rpc_error(drill: &mut Drill, backend: &str, attempt: u32, strict: bool) {
    match drill.try_open(backend).await {
        None => {}
        Some(Ok(session)) if strict => {
            drill.fail(format!("initialize #{attempt} on `{backend}` succeeded: {}", session.init));
        }
        Some(Ok(session)) => {
            drill.expect(session.init["id"] == 0, || format!("initialize #{attempt} on `{backend}`: {}", session.init));
        }
        Some(Err((status, body))) => {
            let code = body.pointer("/error/code").and_then(Value::as_i64);
            drill.expect(status != StatusCode::INTERNAL_SERVER_ERROR && code.is_some() && body["id"] == 0, || {
                format!("initialize #{attempt} on `{backend}`: expected a JSON-RPC error with the request's id, got {status} {body}")
            });
        }
    }
}

/// An `initialize` whose result is not an object (an array, a string): the clients of a shared
/// instance get a JSON-RPC error, not a 500 from a panic; per-session clients get a JSON-RPC
/// answer (an error, or the server's own result) and berth does not panic either.
#[tokio::test]
async fn an_initialize_result_that_is_not_an_object_is_a_json_rpc_error() {
    let mut drill = Drill::start(&[
        shared("array", "init-array"),
        shared("string", "init-string"),
        solo("array-solo", "init-array"),
    ])
    .await;
    let good = drill.open("good").await;
    for backend in ["array", "string"] {
        for attempt in 1..=2 {
            refused_with_json_rpc_error(&mut drill, backend, attempt, true).await;
        }
    }
    refused_with_json_rpc_error(&mut drill, "array-solo", 1, false).await;
    let bystanders = opened(&[("good", &good)]);
    drill.still_served("after initialize results that are not objects", &bystanders).await;
    drill.finish(&[]).await;
}

/// 1,000,000 lines on stderr, on demand and at start-up: rate-limited in the log, and the
/// server is served meanwhile and afterwards.
#[tokio::test]
async fn a_stderr_flood_is_rate_limited() {
    let flood_start = Fixture { patient: true, ..shared("chatty-start", "stderr-flood=1000000") };
    let mut drill = Drill::start(&[Fixture { patient: true, ..shared("chatty", "") }, flood_start]).await;
    flood_case(&mut drill, "chatty", "stderr-flood").await;
    drill.finish(&["chatty", "chatty-start"]).await;
}

/// 1,000,000 short non-JSON lines on stdout, on demand and before `initialize` is answered:
/// rate-limited in the log as stderr is; the call behind them, a long progress call of another
/// session and the good backend are served.
#[tokio::test]
async fn a_stdout_junk_flood_is_rate_limited() {
    let flood_start = Fixture { patient: true, ..shared("flood-start", "stdout-flood=1000000") };
    let mut drill = Drill::start(&[Fixture { patient: true, ..shared("flood", "") }, flood_start]).await;
    flood_case(&mut drill, "flood", "stdout-flood").await;
    drill.finish(&["flood", "flood-start"]).await;
}

/// The flood `what` on `backend` while a bystander's long progress call runs there, then the
/// backend `<backend>-start`, which flooded before its handshake.
async fn flood_case(drill: &mut Drill, backend: &str, what: &str) {
    let good = drill.open("good").await;
    let bystander = drill.open(backend).await;
    let long = bystander.as_ref().map(|s| progress(s, 16, 500));
    if let Some(victim) = drill.open(backend).await {
        let pending = {
            let (victim, label) = (Arc::clone(&victim), format!("misbehave {what} on `{backend}`"));
            let arguments = json!({"what": what, "lines": 1_000_000});
            tokio::spawn(async move { call(&victim, &label, "misbehave", arguments).await })
        };
        let bystanders = opened(&[("good", &good)]);
        drill.still_served(&format!("during the {what} of `{backend}`"), &bystanders).await;
        if let Some(response) = drill.record(pending.await.map_err(|e| e.to_string()).and_then(|r| r)) {
            let expected = format!("misbehaved: {what}");
            drill.expect(text_of(&response) == Some(expected.as_str()), || {
                format!("misbehave {what} on `{backend}`: expected the call answered after the flood, got {response}")
            });
        }
        drill.echo(backend, &victim, &format!("after the {what}")).await;
    }
    if let Some(long) = long {
        let outcome = long.await;
        check_progress(drill, backend, 16, outcome);
    }
    let start = format!("{backend}-start");
    if let Some(session) = drill.open(&start).await {
        drill.echo(&start, &session, &format!("after a {what} before initialize")).await;
    }
    let bystanders = opened(&[("good", &good), (backend, &bystander)]);
    drill.still_served(&format!("after the {what}"), &bystanders).await;
}

/// A server request with `"id": null`, then `notifications/cancelled` whose `params` is a
/// string or an array: berth neither panics nor stops reading the server; the call behind them
/// is answered, and so is everything after.
#[tokio::test]
async fn a_null_id_request_then_a_malformed_cancellation_is_survived() {
    let mut drill = Drill::start(&[shared("cancel", ""), solo("cancel-solo", "")]).await;
    let good = drill.open("good").await;
    let bystander = drill.open("cancel").await;
    for backend in ["cancel", "cancel-solo"] {
        for params in ["string", "array"] {
            let Some(victim) = drill.open(backend).await else { continue };
            drill.misbehave_answered(backend, &victim, json!({"what": "cancel-null", "params": params})).await;
            drill
                .echo(backend, &victim, &format!("after a null-id request and a cancellation with {params} params"))
                .await;
        }
    }
    let bystanders = opened(&[("good", &good), ("cancel", &bystander)]);
    drill.still_served("after malformed cancellations", &bystanders).await;
    drill.finish(&[]).await;
}

/// Responses to ids never sent, with both `result` and `error`, with ids that are objects,
/// floats, negative or above 2^64, and a duplicated response: ignored; the client gets its one
/// answer, and later calls get theirs (never a stale duplicate).
#[tokio::test]
async fn responses_with_bad_ids_are_ignored() {
    let mut drill = Drill::start(&[shared("ids", ""), solo("ids-solo", "")]).await;
    let good = drill.open("good").await;
    let bystander = drill.open("ids").await;
    for backend in ["ids", "ids-solo"] {
        let Some(victim) = drill.open(backend).await else { continue };
        drill.misbehave_answered(backend, &victim, json!({"what": "bad-ids"})).await;
        drill.echo(backend, &victim, "after bad ids and a duplicate").await;
        let what = format!("misbehave bad-ids (an answer with both result and error) on `{backend}`");
        let response = call(&victim, &what, "misbehave", json!({"what": "bad-ids", "answer": "both"})).await;
        if let Some(response) = drill.record(response) {
            drill.expect(response.get("error").is_some() || response.get("result").is_some(), || {
                format!("{what}: expected a response, got {response}")
            });
        }
        drill.echo(backend, &victim, "after an answer with both result and error").await;
    }
    let bystanders = opened(&[("good", &good), ("ids", &bystander)]);
    drill.still_served("after bad ids", &bystanders).await;
    drill.finish(&["ids", "ids-solo"]).await;
}
