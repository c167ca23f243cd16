//! A stdio MCP server written against raw JSON-RPC (no SDK), so that tests can make it do what
//! SDK-based servers never do on demand: answer with fields and methods no SDK knows, crash in
//! the middle of a call, take its time, ask the client things, and misbehave outright.
//!
//! Every request is served on a thread of its own, so slow calls do not block others, as in a
//! real asynchronous server. Tools:
//! - `echo {text}`: returns `text`, plus extra fields at every level;
//! - `pid`: returns the process id (which instance answered);
//! - `slow {ms}`: answers after `ms` milliseconds;
//! - `progress {steps, ms}`: sends `steps` progress notifications `ms` apart, then answers (with
//!   many steps, a call that stays in flight for a long time while proving it works);
//! - `crash`: exits with status 3 at once;
//! - `ask {method}`: sends a request `method` (e.g. `sampling/createMessage` or a custom one) to
//!   the client and returns its answer as text;
//! - `notify`: sends a custom notification and `notifications/tools/list_changed`;
//! - `touch {uri}`: sends `notifications/resources/updated` for `uri`;
//! - `subscriptions`: returns how many `resources/subscribe` and `resources/unsubscribe` it got;
//! - `cancelled`: returns, as JSON in the text, the `requestId`s of the `notifications/cancelled`
//!   it received (`cancelled`) and how many `slow` calls started (`slow_started`);
//! - `grow {name}` (not in `tools/list`): adds a tool `name` to `tools/list` (it echoes its
//!   arguments) and sends `notifications/tools/list_changed`;
//! - `env {name}` (not in `tools/list`): returns the value of the environment variable `name`,
//!   or `<unset>`;
//! - `misbehave {what, ...}` (not in `tools/list`): breaks the protocol as `what` says, then
//!   answers `misbehaved: what` (unless stdout is gone by then):
//!   - `junk {rounds = 1}`: per round, a valid notification (`notifications/message`) followed
//!     by junk lines on stdout: text that is not JSON, truncated JSON, binary garbage (NUL,
//!     0xFF, escape sequences), a JSON-RPC line holding invalid UTF-8, JSON that is not
//!     JSON-RPC;
//!   - `huge {bytes = 50000000}`: one line of `bytes` bytes on stdout (a notification carrying
//!     a long string), written in pieces;
//!   - `close-stdout`: closes stdout and keeps running without ever exiting on its own (it
//!     re-executes itself with stdout on `/dev/null` and sleeps; the pid stays the same, stdin
//!     is no longer read); the call is never answered;
//!   - `stdout-flood {lines = 1000000}`, `stderr-flood {lines = 1000000}`: that many short
//!     non-JSON lines on stdout or stderr, as fast as the pipe takes them;
//!   - `cancel-null {params = "string", method = "x/ask"}`: a request `method` to the client
//!     with `"id": null`, then `notifications/cancelled` whose `params` is not an object
//!     (`"string"`, `"array"`, `"number"` or `"null"`), then the answer;
//!   - `bad-ids {answer = "result"}`: responses to ids that were never sent (a huge integer, a
//!     string), one with both `result` and `error`, ids that are an object, a float and an
//!     integer above 2^64; then the answer (with both `result` and `error` when `answer` is
//!     `"both"`), then the same answer again (a duplicate).
//!
//! The custom request method `x/echo` answers its params with an extra field.
//!
//! With `FIXTURE_EXIT_DELAY_MS` set, it lingers that long after its stdin closed before it
//! exits, like a server that flushes state on the way out.
//!
//! `FIXTURE_MISBEHAVE` makes it misbehave from the start: a comma-separated list of
//! - `init-silent`: never answers `initialize` (everything else is answered);
//! - `init-array`, `init-string`: answers `initialize` with a result that is not an object
//!   (`[…]`, a string);
//! - `junk`: every line it writes is preceded by the junk lines of `misbehave junk`;
//! - `stdout-flood[=LINES]`, `stderr-flood[=LINES]`, `huge[=BYTES]`: what the tool does, once,
//!   before the first line is read (so before `initialize` is answered).
//!
//! Without `FIXTURE_MISBEHAVE` and without calls to `misbehave`, its output is what it always was.

use std::{
    collections::HashMap,
    io::{BufRead, BufWriter, Write},
    os::unix::process::CommandExt,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::Duration,
};

use serde_json::{Value, json};

type Out = Arc<Mutex<std::io::Stdout>>;
type Waiters = Arc<Mutex<HashMap<String, mpsc::Sender<Value>>>>;

#[derive(Default)]
struct Counters {
    subscribes: AtomicU64,
    unsubscribes: AtomicU64,
    /// The `requestId`s of the `notifications/cancelled` it received, in order.
    cancelled: Mutex<Vec<Value>>,
    /// How many `slow` calls started.
    slow_started: AtomicU64,
}

/// How `initialize` is answered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Init {
    /// With a proper result.
    #[default]
    Normal,
    /// Never.
    Silent,
    /// With an array as the result.
    Array,
    /// With a string as the result.
    String,
}

/// The lasting misbehaviour `FIXTURE_MISBEHAVE` asked for.
#[derive(Debug, Default)]
struct Modes {
    init: Init,
    /// Junk lines before every line written.
    junk: bool,
}

static MODES: OnceLock<Modes> = OnceLock::new();
/// The tools `grow` added, listed after the fixed ones.
static GROWN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn modes() -> &'static Modes {
    MODES.get_or_init(Modes::default)
}

/// Set in the environment of the image that replaces the process when it closes its stdout.
const STDOUT_CLOSED: &str = "FIXTURE_STDOUT_CLOSED";

/// Lines that a server must never write, and some do: not JSON, truncated JSON, binary
/// garbage, invalid UTF-8 inside an otherwise valid JSON-RPC line, JSON that is not JSON-RPC.
const JUNK: &[&[u8]] = &[
    b"this line is not JSON",
    b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"result\": {",
    b"\x00\x01\x02\x7f\xfe\xff\x1b[31mbinary\x1b[0m\x80\x81\x00",
    b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"\xc3\x28\xff\"}}",
    b"{\"not\": \"JSON-RPC\"}",
    b"[1, 2, 3]",
];

fn write_junk(out: &mut impl Write) {
    for line in JUNK {
        let _ = out.write_all(line);
        let _ = out.write_all(b"\n");
    }
}

fn send(out: &Out, message: &Value) {
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    if modes().junk {
        write_junk(&mut *out);
    }
    let _ = writeln!(out, "{message}");
    let _ = out.flush();
}

/// Writes lines as they are (not necessarily JSON, not necessarily one message each).
fn send_raw(out: &Out, lines: &[&[u8]]) {
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    for line in lines {
        let _ = out.write_all(line);
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

/// One line of `bytes` bytes (newline excluded): a notification with a long string, written
/// in pieces so that the fixture itself never holds it.
fn huge(out: &Out, bytes: u64) {
    let head: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/x-huge","params":{"data":""#;
    let tail: &[u8] = b"\"}}\n";
    let filler = [b'x'; 64 * 1024];
    let mut left = bytes.saturating_sub((head.len() + tail.len() - 1) as u64);
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = out.write_all(head);
    while left > 0 {
        let piece = left.min(filler.len() as u64) as usize;
        if out.write_all(&filler[..piece]).is_err() {
            return;
        }
        left -= piece as u64;
    }
    let _ = out.write_all(tail);
    let _ = out.flush();
}

/// `lines` short lines that are not JSON, as fast as `writer` takes them.
fn flood(writer: impl Write, stream: &str, lines: u64) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    for n in 0..lines {
        if writeln!(writer, "{stream} flood line {n}").is_err() {
            return;
        }
    }
    let _ = writer.flush();
}

/// Closes stdout for good while the process lives on: it re-executes itself (same pid) with
/// stdout on `/dev/null`, and the new image only drains stdin and sleeps, never exiting on its
/// own. Closing fd 1 in place would need `unsafe`, which the workspace forbids.
fn close_stdout(out: &Out) -> ! {
    let _writers_wait = out.lock().unwrap_or_else(|e| e.into_inner());
    let error = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe).env(STDOUT_CLOSED, "1").stdout(std::process::Stdio::null()).exec(),
        Err(error) => error,
    };
    eprintln!("fixture: cannot re-execute itself to close stdout: {error}");
    std::process::exit(4);
}

/// The image that replaces the process after `close-stdout`.
fn live_without_stdout() -> ! {
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The `misbehave` tool (and the start-up misbehaviours): what its doc says; `None` when the
/// call was answered already, or never will be.
fn misbehave(what: &str, arguments: &Value, id: &Value, out: &Out) -> Option<Value> {
    let done = Some(text(format!("misbehaved: {what}")));
    let count = |key: &str, default: u64| arguments[key].as_u64().unwrap_or(default);
    match what {
        "junk" => {
            for round in 0..count("rounds", 1) {
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                let valid = json!({"jsonrpc": "2.0", "method": "notifications/message",
                    "params": {"level": "debug", "data": format!("junk round {round}")}});
                let _ = writeln!(out, "{valid}");
                write_junk(&mut *out);
                let _ = out.flush();
            }
            done
        }
        "huge" => {
            huge(out, count("bytes", 50_000_000));
            done
        }
        "close-stdout" => close_stdout(out),
        "stdout-flood" => {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            flood(&mut *out, "stdout", count("lines", 1_000_000));
            done
        }
        "stderr-flood" => {
            flood(std::io::stderr().lock(), "stderr", count("lines", 1_000_000));
            done
        }
        "cancel-null" => {
            let method = arguments["method"].as_str().unwrap_or("x/ask");
            send(out, &json!({"jsonrpc": "2.0", "id": null, "method": method, "params": {}}));
            let params = match arguments["params"].as_str().unwrap_or("string") {
                "array" => json!([null, "not an object"]),
                "number" => json!(7),
                "null" => Value::Null,
                _ => json!("not an object"),
            };
            send(out, &json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params}));
            done
        }
        "bad-ids" => {
            send_raw(
                out,
                &[
                    br#"{"jsonrpc":"2.0","id":9007199254740993,"result":{"never":"sent"}}"#,
                    br#"{"jsonrpc":"2.0","id":"never-sent","result":{"never":"sent"}}"#,
                    br#"{"jsonrpc":"2.0","id":9007199254740994,"result":{},"error":{"code":-32603,"message":"both"}}"#,
                    br#"{"jsonrpc":"2.0","id":{"an":"object"},"result":{}}"#,
                    br#"{"jsonrpc":"2.0","id":1.5,"result":{}}"#,
                    br#"{"jsonrpc":"2.0","id":-1,"result":{}}"#,
                    br#"{"jsonrpc":"2.0","id":18446744073709551617,"result":{}}"#,
                ],
            );
            let mut reply = json!({"jsonrpc": "2.0", "id": id, "result": done?});
            if arguments["answer"] == "both" {
                reply["error"] = json!({"code": -32603, "message": "both result and error"});
            }
            send(out, &reply);
            send(out, &reply);
            None
        }
        other => Some(json!({"error": {"code": -32602, "message": format!("no misbehaviour {other}")}})),
    }
}

fn text(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}]})
}

fn tools() -> Value {
    let tool = |name: &str| json!({"name": name, "description": name, "inputSchema": {"type": "object"}});
    // `misbehave` is not listed: without it being called, the fixture's output stays what it was.
    let names = ["echo", "pid", "slow", "progress", "crash", "ask", "notify", "touch", "subscriptions", "cancelled"];
    let mut list: Vec<Value> = names.into_iter().map(tool).collect();
    list.extend(GROWN.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|name| tool(name)));
    json!({"tools": list, "x-extra-list": true})
}

/// Runs a tool; `None` when the tool answered (or will never answer) by itself.
fn call(
    params: &Value,
    id: &Value,
    out: &Out,
    waiters: &Waiters,
    counters: &Counters,
    next: &AtomicU64,
) -> Option<Value> {
    let arguments = &params["arguments"];
    let result = match params["name"].as_str().unwrap_or_default() {
        "echo" => {
            let mut result = text(arguments["text"].as_str().unwrap_or_default());
            result["x-extra-result"] = json!({"nested": [1, 2, 3]});
            result["content"][0]["x-extra-content"] = json!(true);
            result
        }
        "pid" => text(std::process::id().to_string()),
        "env" => {
            text(std::env::var(arguments["name"].as_str().unwrap_or_default()).unwrap_or_else(|_| "<unset>".into()))
        }
        "slow" => {
            counters.slow_started.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(arguments["ms"].as_u64().unwrap_or(1000)));
            text("slow done")
        }
        "progress" => {
            let token = params.pointer("/_meta/progressToken").cloned();
            let steps = arguments["steps"].as_u64().unwrap_or(3);
            for step in 1..=steps {
                std::thread::sleep(Duration::from_millis(arguments["ms"].as_u64().unwrap_or(10)));
                if let Some(token) = &token {
                    send(
                        out,
                        &json!({"jsonrpc": "2.0", "method": "notifications/progress",
                        "params": {"progressToken": token, "progress": step, "total": steps}}),
                    );
                }
            }
            text(format!("{steps} steps"))
        }
        "crash" => std::process::exit(3),
        "ask" => {
            let method = arguments["method"].as_str().unwrap_or("sampling/createMessage").to_string();
            let request_id = format!("ask-{}", next.fetch_add(1, Ordering::Relaxed));
            let (tx, rx) = mpsc::channel();
            waiters.lock().unwrap_or_else(|e| e.into_inner()).insert(request_id.clone(), tx);
            send(
                out,
                &json!({"jsonrpc": "2.0", "id": request_id, "method": method, "params": {
                "messages": [{"role": "user", "content": {"type": "text", "text": "hello?"}}],
                "maxTokens": 10, "x-extra-param": id}}),
            );
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(answer) => text(answer.to_string()),
                Err(_) => json!({"content": [{"type": "text", "text": "no answer"}], "isError": true}),
            }
        }
        "notify" => {
            send(out, &json!({"jsonrpc": "2.0", "method": "notifications/x-custom", "params": {"x-extra": 42}}));
            send(out, &json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
            text("notified")
        }
        "touch" => {
            send(
                out,
                &json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                "params": {"uri": arguments["uri"]}}),
            );
            text("touched")
        }
        "subscriptions" => text(format!(
            "{} {}",
            counters.subscribes.load(Ordering::Relaxed),
            counters.unsubscribes.load(Ordering::Relaxed)
        )),
        "cancelled" => {
            let cancelled = counters.cancelled.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let started = counters.slow_started.load(Ordering::Relaxed);
            text(json!({"cancelled": cancelled, "slow_started": started}).to_string())
        }
        "grow" => {
            let name = arguments["name"].as_str().unwrap_or("grown").to_string();
            GROWN.lock().unwrap_or_else(|e| e.into_inner()).push(name);
            send(out, &json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
            text("grown")
        }
        grown if GROWN.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|name| name == grown) => {
            text(arguments.to_string())
        }
        "misbehave" => return misbehave(arguments["what"].as_str().unwrap_or_default(), arguments, id, out),
        other => json!({"error": {"code": -32602, "message": format!("no tool {other}")}}),
    };
    Some(result)
}

fn handle(message: Value, out: &Out, waiters: &Waiters, counters: &Counters, next: &AtomicU64) {
    let id = message.get("id").cloned();
    let method = message.get("method").and_then(Value::as_str).map(str::to_owned);
    let (Some(id), Some(method)) = (id.clone(), method) else {
        // A response to one of our requests, or a notification.
        if message.get("method").and_then(Value::as_str) == Some("notifications/cancelled") {
            let request = message.pointer("/params/requestId").cloned().unwrap_or(Value::Null);
            counters.cancelled.lock().unwrap_or_else(|e| e.into_inner()).push(request);
            return;
        }
        if let (Some(id), None) = (id, message.get("method"))
            && let Some(waiter) =
                waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(id.as_str().unwrap_or_default())
        {
            let _ = waiter.send(message.get("result").or(message.get("error")).cloned().unwrap_or(Value::Null));
        }
        return;
    };
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let result = match method.as_str() {
        "initialize" => match modes().init {
            Init::Normal => json!({
                "protocolVersion": params["protocolVersion"].as_str().unwrap_or("2025-11-25"),
                "capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true}, "x-custom-capability": {}},
                "serverInfo": {"name": "berth-fixture-stdio", "version": "1"},
                "x-extra-init": "kept",
            }),
            Init::Silent => return,
            Init::Array => json!([{"protocolVersion": "2025-11-25"}, "not an object"]),
            Init::String => json!("not an object"),
        },
        "ping" => json!({}),
        "tools/list" => tools(),
        "tools/call" => match call(&params, &id, out, waiters, counters, next) {
            Some(result) => result,
            None => return,
        },
        "resources/subscribe" => {
            counters.subscribes.fetch_add(1, Ordering::Relaxed);
            json!({})
        }
        "resources/unsubscribe" => {
            counters.unsubscribes.fetch_add(1, Ordering::Relaxed);
            json!({})
        }
        "x/echo" => json!({"echo": params, "x-extra": "from the server"}),
        _ => {
            send(
                out,
                &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("no method {method}")}}),
            );
            return;
        }
    };
    let reply = match result.get("error") {
        Some(error) if result.as_object().is_some_and(|o| o.len() == 1) => {
            json!({"jsonrpc": "2.0", "id": id, "error": error})
        }
        _ => json!({"jsonrpc": "2.0", "id": id, "result": result, "x-extra-envelope": 1}),
    };
    send(out, &reply);
}

/// Reads `FIXTURE_MISBEHAVE`: the lasting modes, and the misbehaviours to perform once at
/// start-up with their arguments. An unknown word stops the fixture: a test must not pass
/// because of a typo.
fn parse_misbehave(words: &str) -> (Modes, Vec<(String, Value)>) {
    let mut modes = Modes::default();
    let mut once = Vec::new();
    for word in words.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let (name, number) = match word.split_once('=') {
            Some((name, number)) => match number.parse::<u64>() {
                Ok(number) => (name, Some(number)),
                Err(_) => fail(&format!("FIXTURE_MISBEHAVE: `{word}` needs a whole number")),
            },
            None => (word, None),
        };
        match (name, number) {
            ("init-silent", None) => modes.init = Init::Silent,
            ("init-array", None) => modes.init = Init::Array,
            ("init-string", None) => modes.init = Init::String,
            ("junk", None) => modes.junk = true,
            ("stdout-flood" | "stderr-flood", _) => once.push((name.to_string(), json!({"lines": number}))),
            ("huge", _) => once.push((name.to_string(), json!({"bytes": number}))),
            _ => fail(&format!("FIXTURE_MISBEHAVE: unknown word `{word}`")),
        }
    }
    (modes, once)
}

fn fail(reason: &str) -> ! {
    eprintln!("fixture: {reason}");
    std::process::exit(2);
}

fn main() {
    // FIXTURE_STDERR: written to stderr at start (what `GET /api/backends/{name}/logs` reads).
    if let Ok(text) = std::env::var("FIXTURE_STDERR") {
        eprintln!("{text}");
    }
    if std::env::var_os(STDOUT_CLOSED).is_some() {
        live_without_stdout();
    }
    let (lasting, once) = parse_misbehave(&std::env::var("FIXTURE_MISBEHAVE").unwrap_or_default());
    let _ = MODES.set(lasting);
    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
    for (what, arguments) in once {
        misbehave(&what, &arguments, &Value::Null, &out);
    }
    let waiters: Waiters = Arc::default();
    let counters = Arc::new(Counters::default());
    let next = Arc::new(AtomicU64::new(1));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            eprintln!("fixture: not JSON: {line}");
            continue;
        };
        let (out, waiters, counters, next) = (out.clone(), waiters.clone(), counters.clone(), next.clone());
        std::thread::spawn(move || handle(message, &out, &waiters, &counters, &next));
    }
    // stdin closed: the client is gone; exit like a well-behaved stdio server.
    if let Some(ms) = std::env::var("FIXTURE_EXIT_DELAY_MS").ok().and_then(|ms| ms.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}
