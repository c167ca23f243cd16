//! The greeter as a user runs it: its own `berth.toml`, built with its own registry, served by a
//! real berth on loopback, and called by a real MCP client with Basic authentication.
//!
//! These tests also keep `berth.toml` from rotting: berth's `examples.rs` test checks the
//! configurations of the `berth` binary only, and leaves those of example crates to them.

use std::{collections::HashMap, path::PathBuf, process::Command};

use base64::Engine;
use berth::{Config, Gateway};
use rmcp::{
    ServiceExt,
    model::CallToolRequestParams,
    transport::{StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig},
};
use tokio::net::TcpListener;

const USER: &str = "me";
const PASSWORD: &str = "secret";

fn config_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("berth.toml")
}

/// The environment berth reads its user from, supplied explicitly so that the test does not
/// depend on (or change) the process environment.
fn env(name: &str) -> Option<String> {
    match name {
        "BERTH_AUTH_USERNAME" => Some(USER.to_string()),
        "BERTH_AUTH_PASSWORD" => Some(PASSWORD.to_string()),
        _ => None,
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test]
async fn greet_through_a_real_berth() {
    let config = Config::load(&config_path()).unwrap_or_else(|error| panic!("{error}"));
    let gateway =
        Gateway::build_with_env(&config, &native_greeter::registry(), &env).unwrap_or_else(|error| panic!("{error}"));
    // The configured address is for people; the test takes a free port.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/greeter/mcp", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));

    let anonymous = reqwest::Client::new().post(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "the greeter is behind berth's authentication");
    assert_eq!(anonymous.headers()["www-authenticate"], "Basic realm=\"greeter\", charset=\"UTF-8\"");

    let headers = HashMap::from([(
        http::HeaderName::from_static("authorization"),
        http::HeaderValue::from_str(&basic(USER, PASSWORD)).unwrap(),
    )]);
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    );
    let client = ().serve(transport).await.expect("initialize");
    let tools = client.list_tools(None).await.expect("tools/list");
    let mut names: Vec<&str> = tools.tools.iter().map(|tool| tool.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(names, ["greet", "greetings_sent"]);

    let arguments = serde_json::json!({ "name": "Ada" }).as_object().unwrap().clone();
    let result = client
        .call_tool(CallToolRequestParams::new("greet").with_arguments(arguments))
        .await
        .expect("tools/call greet");
    assert_ne!(result.is_error, Some(true));
    assert_eq!(result.content[0].as_text().map(|t| t.text.as_str()), Some("Hello, Ada!"));

    let result = client.call_tool(CallToolRequestParams::new("greetings_sent")).await.expect("tools/call");
    assert_eq!(result.content[0].as_text().map(|t| t.text.as_str()), Some("1"));

    client.cancel().await.unwrap();
    let _ = stop.send(());
    served.await.unwrap();
}

#[test]
fn the_binary_accepts_its_config() {
    let output = Command::new(env!("CARGO_BIN_EXE_native-greeter"))
        .args(["check", "--config"])
        .arg(config_path())
        .env("BERTH_AUTH_USERNAME", USER)
        .env("BERTH_AUTH_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "configuration ok: backends greeter");
}
