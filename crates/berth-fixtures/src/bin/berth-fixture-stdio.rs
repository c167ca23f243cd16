//! A stdio MCP server written against raw JSON-RPC (no SDK), so that tests can make it do what
//! SDK-based servers never do on demand: answer with fields and methods no SDK knows, crash in
//! the middle of a call, take its time, ask the client things.
//!
//! Every request is served on a thread of its own, so slow calls do not block others, as in a
//! real asynchronous server. Tools:
//! - `echo {text}`: returns `text`, plus extra fields at every level;
//! - `pid`: returns the process id (which instance answered);
//! - `slow {ms}`: answers after `ms` milliseconds;
//! - `progress {steps, ms}`: sends `steps` progress notifications `ms` apart, then answers;
//! - `crash`: exits with status 3 at once;
//! - `ask {method}`: sends a request `method` (e.g. `sampling/createMessage` or a custom one) to
//!   the client and returns its answer as text;
//! - `notify`: sends a custom notification and `notifications/tools/list_changed`;
//! - `touch {uri}`: sends `notifications/resources/updated` for `uri`;
//! - `subscriptions`: returns how many `resources/subscribe` and `resources/unsubscribe` it got.
//!
//! The custom request method `x/echo` answers its params with an extra field.
//!
//! With `FIXTURE_EXIT_DELAY_MS` set, it lingers that long after its stdin closed before it
//! exits, like a server that flushes state on the way out.

use std::{
    collections::HashMap,
    io::{BufRead, Write},
    sync::{
        Arc, Mutex,
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
}

fn send(out: &Out, message: &Value) {
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(out, "{message}");
    let _ = out.flush();
}

fn text(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}]})
}

fn tools() -> Value {
    let tool = |name: &str| json!({"name": name, "description": name, "inputSchema": {"type": "object"}});
    let names = ["echo", "pid", "slow", "progress", "crash", "ask", "notify", "touch", "subscriptions"];
    let list: Vec<Value> = names.into_iter().map(tool).collect();
    json!({"tools": list, "x-extra-list": true})
}

fn call(params: &Value, id: &Value, out: &Out, waiters: &Waiters, counters: &Counters, next: &AtomicU64) -> Value {
    let arguments = &params["arguments"];
    match params["name"].as_str().unwrap_or_default() {
        "echo" => {
            let mut result = text(arguments["text"].as_str().unwrap_or_default());
            result["x-extra-result"] = json!({"nested": [1, 2, 3]});
            result["content"][0]["x-extra-content"] = json!(true);
            result
        }
        "pid" => text(std::process::id().to_string()),
        "slow" => {
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
        other => json!({"error": {"code": -32602, "message": format!("no tool {other}")}}),
    }
}

fn handle(message: Value, out: &Out, waiters: &Waiters, counters: &Counters, next: &AtomicU64) {
    let id = message.get("id").cloned();
    let method = message.get("method").and_then(Value::as_str).map(str::to_owned);
    let (Some(id), Some(method)) = (id.clone(), method) else {
        // A response to one of our requests, or a notification.
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
        "initialize" => json!({
            "protocolVersion": params["protocolVersion"].as_str().unwrap_or("2025-11-25"),
            "capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true}, "x-custom-capability": {}},
            "serverInfo": {"name": "berth-fixture-stdio", "version": "1"},
            "x-extra-init": "kept",
        }),
        "ping" => json!({}),
        "tools/list" => tools(),
        "tools/call" => call(&params, &id, out, waiters, counters, next),
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

fn main() {
    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
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
