//! The REST face (`GET /<name>/openapi.json`, `POST /<name>/tools/<tool>`) over real HTTP:
//! server-everything's document validated by `openapi-spec-validator` and exercised by
//! `schemathesis` (both pinned in `tools/requirements.txt`); calls, refusals, authentication,
//! access and visibility, a backend that is down, a tool list that changes, the kept session
//! and the metrics, against the stdio fixture.

use std::{path::PathBuf, process::Command};

use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Value, json};

use crate::{
    admin::{admin_config, scrape, value},
    everything::{PROCESS_ROUTES, process_config},
    harness::{Berth, PASSWORD, USER, alice, basic, config_with, fixture_binary, http, repo_root},
};

/// schemathesis's check that credentials are not ignored sends wrong ones; the failed-login
/// throttle would answer those with 429 after a few, which is its job but not the check's.
const NO_THROTTLE: &str = "[auth.throttle]\nenabled = false\n";

/// A tool of the pinned Python tooling (`tools/.venv`).
fn python_tool(name: &str) -> PathBuf {
    let path = repo_root().join("tools/.venv/bin").join(name);
    assert!(
        path.exists(),
        "{name} is not installed: run scripts/test (it fills tools/.venv from tools/requirements.txt)"
    );
    path
}

/// `POST {path}` with `body` as `authorization`: status, headers and JSON answer.
async fn post(berth: &Berth, path: &str, authorization: Option<&str>, body: &str) -> (StatusCode, HeaderMap, Value) {
    let mut request = http().post(berth.url(path)).header("content-type", "application/json").body(body.to_string());
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    answer(request.send().await.unwrap()).await
}

/// `GET {path}` as `authorization`.
async fn get(berth: &Berth, path: &str, authorization: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    let mut request = http().get(berth.url(path));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    answer(request.send().await.unwrap()).await
}

/// Every answer of the REST face is JSON, refusals included.
async fn answer(response: reqwest::Response) -> (StatusCode, HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "{status}: {content_type}: {text}");
    (status, headers, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {e}: {text}")))
}

/// The refusal's `error` slug, checked to have the shape of every refusal.
fn slug(body: &Value) -> &str {
    assert!(body["message"].is_string(), "{body}");
    body["error"].as_str().unwrap_or_else(|| panic!("no error slug: {body}"))
}

/// A request the face refuses itself: method, path, `Content-Type`, body, status and slug.
type Refusal<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, StatusCode, &'a str);

/// The tool paths of a document.
fn paths(document: &Value) -> Vec<String> {
    document["paths"].as_object().unwrap().keys().cloned().collect()
}

/// server-everything's document is a valid OpenAPI 3.1 document naming the URL the client
/// used, and schemathesis, fuzzing every operation against the live berth, finds no server
/// error and no answer the document does not describe.
#[tokio::test]
async fn server_everythings_document_validates_and_schemathesis_finds_nothing() {
    let berth = Berth::start(&format!("{}{NO_THROTTLE}", process_config())).await;
    let [route, _] = PROCESS_ROUTES;
    let (status, _, document) = get(&berth, &format!("/{route}/openapi.json"), Some(&alice())).await;
    assert_eq!(status, StatusCode::OK, "{document}");
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["servers"], json!([{"url": berth.url(&format!("/{route}"))}]));
    let listed = paths(&document);
    for tool in ["/tools/echo", "/tools/get-sum", "/tools/get-structured-content"] {
        assert!(listed.iter().any(|path| path == tool), "{tool} in {listed:?}");
    }
    // A tool that must run as a task is no REST operation.
    assert!(!listed.iter().any(|path| path.contains("simulate-research-query")), "{listed:?}");
    let ids: Vec<&str> =
        document["paths"].as_object().unwrap().values().map(|p| p["post"]["operationId"].as_str().unwrap()).collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    // The same document twice: ids are stable.
    let (_, _, again) = get(&berth, &format!("/{route}/openapi.json"), Some(&alice())).await;
    assert_eq!(again, document);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let validated = Command::new(python_tool("openapi-spec-validator")).arg(&file).output().unwrap();
    let said = String::from_utf8_lossy(&validated.stdout);
    assert!(validated.status.success(), "openapi-spec-validator: {said}{}", String::from_utf8_lossy(&validated.stderr));
    assert!(said.contains("OK"), "{said}");

    // Two operations are left out of the fuzzing: one runs for as many seconds as its
    // generated argument says, one fetches a URL from the network.
    let checks = "not_a_server_error,status_code_conformance,content_type_conformance,\
                  response_headers_conformance,response_schema_conformance,negative_data_rejection,\
                  unsupported_method,ignored_auth";
    let url = berth.url(&format!("/{route}/openapi.json"));
    let auth = format!("{USER}:{PASSWORD}");
    let schemathesis = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            Command::new(python_tool("schemathesis"))
                .args(["run", &url, "--auth", &auth, "--checks", checks])
                .args(["--exclude-path-regex", "long-running|gzip", "--max-examples", "25", "--seed", "7"])
                .args(["--workers", "2", "--request-timeout", "30", "--no-color"])
                .current_dir(dir)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let output = String::from_utf8_lossy(&schemathesis.stdout);
    let summary = &output[output.find("SUMMARY").unwrap_or(0)..];
    println!("schemathesis:\n{summary}");
    assert!(
        schemathesis.status.success(),
        "schemathesis failed:\n{output}{}",
        String::from_utf8_lossy(&schemathesis.stderr)
    );
    let tested = format!("Tested: {}", listed.len() - 2);
    assert!(summary.contains(&tested), "every selected operation was tested ({tested}):\n{summary}");
    assert!(summary.contains("No issues found") || !summary.contains("failures"), "{summary}");

    // What schemathesis covered, asserted by hand: results, structured content, bad
    // arguments, a tool's own failure.
    let tool = |name: &str| format!("/{route}/tools/{name}");
    let (status, _, echoed) = post(&berth, &tool("echo"), Some(&alice()), r#"{"message": "hi"}"#).await;
    assert_eq!((status, echoed), (StatusCode::OK, json!([{"type": "text", "text": "Echo: hi"}])));
    let (status, _, weather) =
        post(&berth, &tool("get-structured-content"), Some(&alice()), r#"{"location": "Chicago"}"#).await;
    assert_eq!(status, StatusCode::OK, "{weather}");
    assert!(weather["temperature"].is_number(), "structured content, not the content list: {weather}");
    let (status, _, refused) = post(&berth, &tool("get-sum"), Some(&alice()), r#"{"a": "one"}"#).await;
    assert_eq!((status, slug(&refused)), (StatusCode::BAD_REQUEST, "invalid_arguments"), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("`b` is required"), "{refused}");
    // berth answers the server's sampling request itself (no REST caller can): the tool fails.
    let (status, _, failed) =
        post(&berth, &tool("trigger-sampling-request"), Some(&alice()), r#"{"prompt": "x"}"#).await;
    assert_eq!((status, slug(&failed)), (StatusCode::UNPROCESSABLE_ENTITY, "tool_error"), "{failed}");
    assert_eq!(failed["result"]["isError"], true, "{failed}");
    berth.stop().await;
}

/// Calls on the fixture: results, every refusal the face answers itself, a backend that is
/// down, authentication, one kept session (no handshake per call, re-opened when it ends), a
/// tool list that changes, percent-encoded names, and the metrics of the MCP route.
#[tokio::test]
async fn rest_calls_answer_results_refusals_and_count_in_the_metrics() {
    let extra = "[backends.down]\nkind = \"process\"\ncommand = \"/bin/false\"\n\n[server]\nmax_body_bytes = 65536\n";
    let berth = Berth::start(&admin_config("", extra)).await;
    let me = alice();
    let me = Some(me.as_str());
    let (status, _, echoed) = post(&berth, "/fx/tools/echo", me, r#"{"text": "over rest"}"#).await;
    assert_eq!(status, StatusCode::OK, "{echoed}");
    assert_eq!(echoed[0]["text"], "over rest", "the content list: {echoed}");
    let before = scrape(&berth).await;
    for n in 0..3 {
        let (status, _, echoed) = post(&berth, "/fx/tools/echo", me, &json!({"text": n.to_string()}).to_string()).await;
        assert_eq!((status, echoed[0]["text"].as_str()), (StatusCode::OK, Some(n.to_string().as_str())));
    }
    let after = scrape(&berth).await;
    let delta = |series: &str| value(&after, series).unwrap_or(0.0) - value(&before, series).unwrap_or(0.0);
    assert_eq!(delta("berth_tool_calls_total{backend=\"fx\",tool=\"echo\",outcome=\"ok\"}"), 3.0, "{after}");
    assert_eq!(delta("berth_mcp_requests_total{backend=\"fx\",method=\"tools/call\",outcome=\"ok\"}"), 3.0);
    assert_eq!(
        delta("berth_mcp_requests_total{backend=\"fx\",method=\"initialize\",outcome=\"ok\"}"),
        0.0,
        "the session is kept: no handshake per call"
    );
    assert_eq!(
        value(&after, "berth_mcp_requests_total{backend=\"fx\",method=\"initialize\",outcome=\"ok\"}"),
        Some(1.0)
    );

    // The kept session is one of Alice's; ended behind berth's back, it is opened again.
    let sessions: Value = http()
        .get(berth.admin_url("/api/sessions"))
        .header("authorization", alice())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kept: Vec<&Value> =
        sessions["sessions"].as_array().unwrap().iter().filter(|s| s["client"]["name"] == "berth-rest").collect();
    assert_eq!(kept.len(), 1, "{sessions}");
    assert_eq!(kept[0]["user"], USER);
    let id = kept[0]["id"].as_str().unwrap();
    let ended = http()
        .delete(berth.admin_url(&format!("/api/sessions/{id}")))
        .header("authorization", alice())
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::OK);
    let (status, _, echoed) = post(&berth, "/fx/tools/echo", me, r#"{"text": "again"}"#).await;
    assert_eq!((status, echoed[0]["text"].as_str()), (StatusCode::OK, Some("again")));

    // The refusals berth answers itself, each as JSON with its status.
    let big = format!("{{\"text\": \"{}\"}}", "x".repeat(70_000));
    let table: &[Refusal] = &[
        ("POST", "/fx/tools/no-such-tool", Some("application/json"), "{}", StatusCode::NOT_FOUND, "unknown_tool"),
        ("POST", "/fx/tools/echo", Some("application/json"), "[1]", StatusCode::BAD_REQUEST, "invalid_arguments"),
        ("POST", "/fx/tools/echo", Some("application/json"), "{nope", StatusCode::BAD_REQUEST, "invalid_arguments"),
        (
            "POST",
            "/fx/tools/echo",
            Some("text/plain"),
            "{}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        ("POST", "/fx/tools/echo", None, "{}", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("POST", "/fx/tools/echo", Some("application/json"), &big, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        ("GET", "/fx/tools/echo", None, "", StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        ("PUT", "/fx/openapi.json", None, "", StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        ("POST", "/nope/tools/echo", Some("application/json"), "{}", StatusCode::NOT_FOUND, "unknown_backend"),
    ];
    for (method, path, content_type, body, expected, expected_slug) in table {
        let mut request = http()
            .request(method.parse().unwrap(), berth.url(path))
            .header("authorization", alice())
            .body(body.to_string());
        if let Some(content_type) = content_type {
            request = request.header("content-type", *content_type);
        }
        let (status, headers, answer) = answer(request.send().await.unwrap()).await;
        assert_eq!((status, slug(&answer)), (*expected, *expected_slug), "{method} {path}: {answer}");
        if status == StatusCode::METHOD_NOT_ALLOWED {
            let allow = if path.ends_with("openapi.json") { "GET, HEAD" } else { "POST" };
            assert_eq!(headers["allow"], allow, "{method} {path}");
        }
    }
    // A backend that cannot start: 502 while its run fails, 503 while it waits to restart.
    for (status, _, body) in [
        get(&berth, "/down/openapi.json", me).await,
        post(&berth, "/down/tools/echo", me, "{}").await,
        get(&berth, "/down/openapi.json", me).await,
    ] {
        assert!(status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE, "{status}: {body}");
        assert_eq!(slug(&body), "backend_error", "{body}");
    }
    // An empty body is no arguments.
    let (status, _, pid) = post(&berth, "/fx/tools/pid", me, "").await;
    assert_eq!(status, StatusCode::OK, "{pid}");

    // Without credentials, or with wrong ones: 401 as on the MCP route, with the challenge.
    for authorization in [None, Some(basic(USER, "wrong"))] {
        for (status, headers, body) in [
            get(&berth, "/fx/openapi.json", authorization.as_deref()).await,
            post(&berth, "/fx/tools/echo", authorization.as_deref(), "{}").await,
        ] {
            assert_eq!((status, slug(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"), "{body}");
            assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Basic"), "{headers:?}");
        }
    }

    // The document follows the tool list: a tool added behind berth's back (through an MCP
    // session of the admin API), announced with list_changed, is in the next document and
    // callable under its percent-encoded name.
    let (status, _, document) = get(&berth, "/fx/openapi.json", me).await;
    assert_eq!(status, StatusCode::OK, "{document}");
    assert_eq!(document["servers"], json!([{"url": berth.url("/fx")}]));
    assert!(paths(&document).contains(&"/tools/echo".to_string()), "{document}");
    assert!(!paths(&document).iter().any(|path| path.contains("grown")), "{document}");
    let grow = http()
        .post(berth.admin_url("/api/backends/fx/call"))
        .header("authorization", alice())
        .body(json!({"tool": "grow", "arguments": {"name": "grown/tool {1}"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(grow.status(), StatusCode::OK);
    let (_, _, document) = get(&berth, "/fx/openapi.json", me).await;
    let encoded = "/tools/grown%2Ftool%20%7B1%7D";
    assert!(paths(&document).contains(&encoded.to_string()), "{:?}", paths(&document));
    let (status, _, called) = post(&berth, &format!("/fx{encoded}"), me, r#"{"k": 1}"#).await;
    assert_eq!(status, StatusCode::OK, "{called}");
    assert_eq!(called[0]["text"], json!({"k": 1}).to_string());

    // REST refusals count where the MCP route's do.
    let text = scrape(&berth).await;
    assert!(value(&text, "berth_http_requests_total{listener=\"mcp\",status=\"415\"}").unwrap() >= 2.0, "{text}");
    assert!(value(&text, "berth_http_requests_total{listener=\"mcp\",status=\"401\"}").unwrap() >= 4.0, "{text}");
    berth.stop().await;
}

/// Access rules are the MCP route's: a user the backend's `allow` list does not admit gets
/// 403 on the document and on calls; a tool hidden from a user is absent from their document
/// and refused as unknown, while a user whose group sees it gets both; the rate limit counts
/// REST calls per identity.
#[tokio::test]
async fn rest_callers_see_and_call_only_what_their_access_allows() {
    let fixture = fixture_binary();
    let config = config_with(&format!(
        "[auth.groups]\nops = [\"{USER}\"]\n\n[[auth.users]]\nname = \"carol\"\npassword = \"carol-pw\"\n\n\
         [backends.fx]\nkind = \"process\"\ncommand = \"{fixture}\"\ntools = {{ deny = [\"crash\", \"pid\"] }}\n\n\
         [backends.fx.access.ops]\ntools = {{ deny = [\"crash\"] }}\n\n\
         [backends.ops-only]\nkind = \"process\"\ncommand = \"{fixture}\"\nallow = [\"group:ops\"]\n\n\
         [backends.limited]\nkind = \"process\"\ncommand = \"{fixture}\"\nrate_limit = {{ calls = 4, per = \"1h\" }}\n",
        fixture = fixture.display()
    ));
    let berth = Berth::start(&config).await;
    let carol = basic("carol", "carol-pw");
    let (status, _, document) = get(&berth, "/fx/openapi.json", Some(&carol)).await;
    assert_eq!(status, StatusCode::OK, "{document}");
    let carols = paths(&document);
    assert!(
        carols.contains(&"/tools/echo".to_string()) && !carols.iter().any(|p| p == "/tools/pid" || p == "/tools/crash"),
        "{carols:?}"
    );
    let (status, _, refused) = post(&berth, "/fx/tools/pid", Some(&carol), "{}").await;
    assert_eq!((status, slug(&refused)), (StatusCode::NOT_FOUND, "unknown_tool"), "{refused}");
    // Alice is in ops, whose view shows pid (not crash).
    let (_, _, document) = get(&berth, "/fx/openapi.json", Some(&alice())).await;
    let alices = paths(&document);
    assert!(alices.contains(&"/tools/pid".to_string()) && !alices.contains(&"/tools/crash".to_string()), "{alices:?}");
    let (status, _, pid) = post(&berth, "/fx/tools/pid", Some(&alice()), "{}").await;
    assert_eq!(status, StatusCode::OK, "{pid}");
    let (status, _, refused) = post(&berth, "/fx/tools/crash", Some(&alice()), "{}").await;
    assert_eq!((status, slug(&refused)), (StatusCode::NOT_FOUND, "unknown_tool"), "{refused}");
    // Carol's document still lacks pid after Alice's: lists are per caller.
    let (_, _, document) = get(&berth, "/fx/openapi.json", Some(&carol)).await;
    assert!(!paths(&document).contains(&"/tools/pid".to_string()));

    for (status, _, body) in [
        get(&berth, "/ops-only/openapi.json", Some(&carol)).await,
        post(&berth, "/ops-only/tools/echo", Some(&carol), "{}").await,
    ] {
        assert_eq!((status, slug(&body)), (StatusCode::FORBIDDEN, "forbidden_backend"), "{body}");
    }
    let (status, _, echoed) = post(&berth, "/ops-only/tools/echo", Some(&alice()), r#"{"text": "ops"}"#).await;
    assert_eq!((status, echoed[0]["text"].as_str()), (StatusCode::OK, Some("ops")));

    // The rate limit counts the REST caller's requests: the handshake, one tools/list, then
    // one tools/call per call; beyond it 429 with Retry-After.
    for _ in 0..2 {
        let (status, _, echoed) = post(&berth, "/limited/tools/echo", Some(&carol), r#"{"text": "x"}"#).await;
        assert_eq!(status, StatusCode::OK, "{echoed}");
    }
    let (status, headers, refused) = post(&berth, "/limited/tools/echo", Some(&carol), r#"{"text": "x"}"#).await;
    assert_eq!((status, slug(&refused)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{refused}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    // Another identity has its own bucket.
    let (status, _, _) = post(&berth, "/limited/tools/echo", Some(&alice()), r#"{"text": "x"}"#).await;
    assert_eq!(status, StatusCode::OK);
    berth.stop().await;
}
