//! Which tools, prompts and resources an identity sees, over real HTTP with real clients: with
//! server-everything as a process (shared and per-session) and in a container, `echo` is hidden
//! from Alice and shown to Bob's group, `get-sum` stays; with the conformance server (native),
//! prompts and resources too, JSON and SSE answers alike. Hidden items are gone from the lists
//! and their calls get the error a server gives for an unknown name; each session of a shared
//! instance sees its own view.

use std::collections::HashMap;

use http::{HeaderName, HeaderValue};
use reqwest::StatusCode;
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams},
    service::{RoleClient, RunningService},
    transport::{StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig},
};
use serde_json::{Value, json};

use crate::{
    everything::{DOCKER_ROUTES, PROCESS_ROUTES, docker_config, process_config},
    harness::{Berth, alice, basic, docker_ready},
    requests::{ACCEPT_BOTH, McpHeaders, initialize, initialized},
};

/// Bob, in `dev`.
const BOB: &str = "[[auth.users]]\nname = \"bob\"\npassword = \"bob-pw\"\ngroups = [\"dev\"]\n\n";

/// Hides `echo` on each of `routes`, and shows everything to `dev`.
fn hide_echo(config: String, routes: &[&str]) -> String {
    let mut config = format!("{BOB}{config}");
    for route in routes {
        config = config.replace(
            &format!("[backends.{route}]\n"),
            &format!("[backends.{route}]\ntools = {{ deny = [\"echo\"] }}\n"),
        );
        config.push_str(&format!("\n[backends.{route}.access.dev]\ntools = {{ allow = [\"*\"] }}\n"));
    }
    config
}

/// rmcp's client at `route`, as `authorization`.
async fn client(berth: &Berth, route: &str, authorization: &str) -> RunningService<RoleClient, ()> {
    let mut headers = HashMap::new();
    headers.insert(HeaderName::from_static("authorization"), HeaderValue::from_str(authorization).unwrap());
    let config = StreamableHttpClientTransportConfig::with_uri(berth.mcp_url(route)).custom_headers(headers);
    ().serve(StreamableHttpClientTransport::from_config(config)).await.expect("initialize")
}

async fn tool_names(client: &RunningService<RoleClient, ()>) -> Vec<String> {
    client.list_all_tools().await.expect("tools/list").into_iter().map(|tool| tool.name.to_string()).collect()
}

/// Alice (no group) and Bob (`dev`) on a shared route at once, then Alice alone.
async fn check_everything(berth: &Berth, route: &str) {
    let (alice_client, bob_client) =
        (client(berth, route, &alice()).await, client(berth, route, &basic("bob", "bob-pw")).await);
    let (alices, bobs) = (tool_names(&alice_client).await, tool_names(&bob_client).await);
    assert!(!alices.contains(&"echo".to_string()) && alices.contains(&"get-sum".to_string()), "{route}: {alices:?}");
    assert!(bobs.contains(&"echo".to_string()), "{route}: dev sees echo: {bobs:?}");
    let echo =
        || CallToolRequestParams::new("echo").with_arguments(json!({"message": "hi"}).as_object().unwrap().clone());
    let refused = alice_client.call_tool(echo()).await.expect_err("alice may not call echo");
    let refused = format!("{refused:?}");
    assert!(refused.contains("Unknown tool: echo") && refused.contains("-32602"), "{route}: {refused}");
    let echoed = bob_client.call_tool(echo()).await.expect("bob calls echo");
    assert!(serde_json::to_string(&echoed.content).unwrap().contains("Echo: hi"), "{route}");
    let sum =
        CallToolRequestParams::new("get-sum").with_arguments(json!({"a": 2, "b": 40}).as_object().unwrap().clone());
    let summed = alice_client.call_tool(sum).await.expect("alice calls get-sum");
    assert!(serde_json::to_string(&summed.content).unwrap().contains("42"), "{route}");
    alice_client.cancel().await.unwrap();
    bob_client.cancel().await.unwrap();
}

#[tokio::test]
async fn hidden_tools_of_a_process_server_are_not_listed_nor_callable() {
    let berth = Berth::start(&hide_echo(process_config(), &PROCESS_ROUTES)).await;
    for route in PROCESS_ROUTES {
        check_everything(&berth, route).await;
    }
    berth.stop().await;
}

#[tokio::test]
async fn hidden_tools_of_a_container_server_are_not_listed_nor_callable() {
    if !docker_ready(&["everything"]) {
        return;
    }
    let berth = Berth::start(&hide_echo(docker_config(), &DOCKER_ROUTES)).await;
    for route in DOCKER_ROUTES {
        check_everything(&berth, route).await;
    }
    berth.stop().await;
}

/// A raw exchange as Alice in `session`: the status and the answer (JSON body or SSE data).
async fn exchange(url: &str, session: Option<&str>, body: Value) -> (StatusCode, Option<String>, Value) {
    let mut request = crate::harness::http()
        .post(url)
        .header("authorization", alice())
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .protocol("2025-11-25");
    if let Some(session) = session {
        request = request.session(session);
    }
    let response = request.body(body.to_string()).send().await.unwrap();
    let status = response.status();
    let opened = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .ok()
        .or_else(|| text.lines().find_map(|line| serde_json::from_str(line.strip_prefix("data:")?.trim()).ok()));
    (status, opened, json.unwrap_or(Value::Null))
}

#[tokio::test]
async fn native_prompts_resources_and_tools_are_filtered_on_list_and_call() {
    let config = crate::harness::config_with("").replace(
        "[backends.conformance]\n",
        "[backends.conformance]\ntools = { allow = [\"test_simple_*\"] }\n\
         prompts = { deny = [\"test_simple_prompt\"] }\nresources = { deny = [\"test://static-b*\", \"test://template/*\"] }\n",
    );
    let berth = Berth::start(&config).await;
    let url = berth.mcp_url("conformance");
    let (_, session, _) = exchange(&url, None, initialize("2025-11-25")).await;
    let session = session.unwrap();
    exchange(&url, Some(&session), initialized()).await;
    let request =
        |id: i64, method: &str, params: Value| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let names = |answer: &Value, field: &str, key: &str| -> Vec<String> {
        answer["result"][field].as_array().unwrap().iter().map(|e| e[key].as_str().unwrap().to_string()).collect()
    };

    let (_, _, tools) = exchange(&url, Some(&session), request(2, "tools/list", json!({}))).await;
    assert_eq!(names(&tools, "tools", "name"), ["test_simple_text"], "{tools}");
    let (_, _, prompts) = exchange(&url, Some(&session), request(3, "prompts/list", json!({}))).await;
    let prompts = names(&prompts, "prompts", "name");
    assert!(!prompts.is_empty() && !prompts.contains(&"test_simple_prompt".to_string()), "{prompts:?}");
    let (_, _, resources) = exchange(&url, Some(&session), request(4, "resources/list", json!({}))).await;
    let resources = names(&resources, "resources", "uri");
    assert!(resources.contains(&"test://static-text".to_string()), "{resources:?}");
    assert!(!resources.iter().any(|uri| uri.starts_with("test://static-b")), "{resources:?}");
    let (_, _, templates) = exchange(&url, Some(&session), request(5, "resources/templates/list", json!({}))).await;
    assert_eq!(names(&templates, "resourceTemplates", "uriTemplate"), Vec::<String>::new(), "{templates}");

    // Calls of hidden items: the errors of unknown ones, with the request's id.
    for (id, method, params, code) in [
        (6, "tools/call", json!({"name": "test_image_content", "arguments": {}}), -32602),
        (7, "prompts/get", json!({"name": "test_simple_prompt"}), -32602),
        (8, "resources/read", json!({"uri": "test://static-binary"}), -32002),
        (9, "resources/read", json!({"uri": "test://template/42/data"}), -32002),
    ] {
        let (status, _, answer) = exchange(&url, Some(&session), request(id, method, params)).await;
        assert_eq!(status, StatusCode::OK, "{method}: {answer}");
        assert_eq!(
            (answer["id"].as_i64(), answer["error"]["code"].as_i64()),
            (Some(id), Some(code)),
            "{method}: {answer}"
        );
    }
    // Visible ones still work.
    let (_, _, text) =
        exchange(&url, Some(&session), request(10, "tools/call", json!({"name": "test_simple_text"}))).await;
    assert!(text["result"]["content"].is_array(), "{text}");
    let (_, _, read) =
        exchange(&url, Some(&session), request(11, "resources/read", json!({"uri": "test://static-text"}))).await;
    assert!(read["result"]["contents"].is_array(), "{read}");
    berth.stop().await;

    // Through rmcp's client too.
    let berth = Berth::start(&config).await;
    let client = client(&berth, "conformance", &alice()).await;
    assert_eq!(tool_names(&client).await, ["test_simple_text"]);
    let prompt = client.get_prompt(GetPromptRequestParams::new("test_simple_prompt")).await;
    assert!(prompt.is_err(), "{prompt:?}");
    let read = client.read_resource(ReadResourceRequestParams::new("test://static-binary")).await;
    assert!(read.is_err(), "{read:?}");
    client.cancel().await.unwrap();
    berth.stop().await;
}
