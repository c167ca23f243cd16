//! The deployment checklist users run against a fresh deployment (the FastMCP guide's), as a
//! test: health without auth, 401 without auth, 406 without the SSE Accept, then a session.

use reqwest::StatusCode;

use crate::{
    harness::{Berth, alice, http},
    requests::{exchange, initialize},
};

#[tokio::test]
async fn deployment_checklist() {
    let berth = Berth::default().await;
    let client = http();
    let health = client.get(berth.url("/")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "GET / without auth");
    let anonymous = client.post(berth.mcp_url("conformance")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "/x/mcp without auth");
    // curl's default Accept is */*, which is not an explicit text/event-stream.
    let no_sse = client
        .get(berth.mcp_url("conformance"))
        .header("authorization", alice())
        .header("accept", "*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(no_sse.status(), StatusCode::NOT_ACCEPTABLE, "GET without Accept: text/event-stream");
    let (status, headers, message) = exchange(&berth.mcp_url("conformance"), None, initialize("2025-06-18")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("mcp-session-id"));
    let result = &message.unwrap()["result"];
    assert_eq!(result["protocolVersion"], "2025-06-18");
    assert!(result["capabilities"]["tools"].is_object(), "{result}");
    berth.stop().await;
}
