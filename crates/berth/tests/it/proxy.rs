//! A real reverse proxy in front of a real berth binary, on loopback: nginx from Debian's
//! packages (scripts/test installs it), set up the way Traefik behaves. It proves host routing
//! under `server.base_domain`, that SSE events cross the proxy while the stream is still open,
//! and that `X-Forwarded-*` count only from `server.trusted_proxies`.
//!
//! Addresses: nginx reaches berth from 127.0.0.2 (`proxy_bind`), the only trusted proxy; test
//! clients reach nginx from 127.0.0.3, and berth directly from 127.0.0.1.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use futures::StreamExt;
use tokio::process::{Child, Command};

use crate::{
    deploy::berth_command,
    harness::{alice, basic, config_with, workspace_bin},
    raw::Messages,
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .expect("nginx is not installed: scripts/test installs it (apt-get install nginx-light)")
}

/// Waits until something accepts connections on `addr`.
async fn wait_listening(addr: SocketAddr, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "{what} never listened on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn nginx_config(dir: &Path, berth: u16, traefik_like: u16, host_rewriting: u16) -> String {
    let dir = dir.display();
    let proxy = "proxy_pass http://berth;
            proxy_bind 127.0.0.2;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_read_timeout 1h;";
    format!(
        "master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream berth {{ server 127.0.0.1:{berth}; }}
    # Like Traefik: a router per host name, the original Host passed through, and nothing for
    # hosts without a router. Response buffering stays at nginx's default (on): berth's SSE
    # answers carry X-Accel-Buffering: no.
    server {{
        listen 127.0.0.1:{traefik_like} default_server;
        return 421;
    }}
    server {{
        listen 127.0.0.1:{traefik_like};
        server_name ~^[a-z0-9-]+\\.mcp\\.test$;
        location / {{
            {proxy}
            proxy_set_header Host $host;
        }}
    }}
    # nginx's own default: Host becomes the upstream's name (`berth`), so only the trusted
    # X-Forwarded-Host tells berth which host the client asked for.
    server {{
        listen 127.0.0.1:{host_rewriting};
        location / {{
            {proxy}
        }}
    }}
}}
"
    )
}

struct Processes {
    berth: Child,
    nginx: Child,
}

/// A client whose connections come from `local`, that sends every `host` to `to`.
fn client(local: &str, host: &str, to: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().unwrap())
        .resolve(host, to)
        .no_proxy()
        .build()
        .unwrap()
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"proxy-test","version":"0"}}}"#;

fn post(client: &reqwest::Client, url: &str, session: Option<&str>, body: &'static str) -> reqwest::RequestBuilder {
    let request = client
        .post(url)
        .header("authorization", alice())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body);
    match session {
        Some(session) => request.header("mcp-session-id", session),
        None => request,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_like_traefik() {
    let dir = tempfile::tempdir().unwrap();
    let berth_port = free_port();
    let (traefik_like, host_rewriting) = (free_port(), free_port());
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        config_with(&format!(
            "[server]\nlisten = \"127.0.0.1:{berth_port}\"\nbase_domain = \"mcp.test\"\ntrusted_proxies = [\"127.0.0.2\"]\n\
             [backends.fx]\nkind = \"process\"\ncommand = \"{}\"\n",
            workspace_bin("berth-fixtures", "berth-fixture-stdio").display()
        )),
    )
    .unwrap();
    let log = dir.path().join("berth.log");
    let berth = berth_command()
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let nginx_conf = dir.path().join("nginx.conf");
    std::fs::write(&nginx_conf, nginx_config(dir.path(), berth_port, traefik_like, host_rewriting)).unwrap();
    let nginx = Command::new(nginx_binary())
        .arg("-e")
        .arg("stderr")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&nginx_conf)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut processes = Processes { berth, nginx };
    let berth_addr: SocketAddr = format!("127.0.0.1:{berth_port}").parse().unwrap();
    let proxy_addr: SocketAddr = format!("127.0.0.1:{traefik_like}").parse().unwrap();
    let rewriting_addr: SocketAddr = format!("127.0.0.1:{host_rewriting}").parse().unwrap();
    wait_listening(berth_addr, "berth").await;
    wait_listening(proxy_addr, "nginx").await;

    // Host routing: conformance.mcp.test/mcp reaches backend `conformance` through the proxy.
    let host = "conformance.mcp.test";
    let url = format!("http://{host}:{traefik_like}/mcp");
    let through = client("127.0.0.3", host, proxy_addr);
    let initialized = post(&through, &url, None, INITIALIZE).send().await.unwrap();
    assert_eq!(initialized.status(), 200);
    let session = initialized.headers()["mcp-session-id"].to_str().unwrap().to_string();
    assert!(initialized.text().await.unwrap().contains("serverInfo"));
    let notified = post(&through, &url, Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(notified.send().await.unwrap().status(), 202);
    // The proxy answers 421 for hosts without a router; berth answers 404 for unknown backends.
    let unrouted = client("127.0.0.3", "elsewhere.test", proxy_addr);
    let answer = post(&unrouted, &format!("http://elsewhere.test:{traefik_like}/mcp"), None, INITIALIZE);
    assert_eq!(answer.send().await.unwrap().status(), 421);
    let nosuch = client("127.0.0.3", "nosuch.mcp.test", proxy_addr);
    let answer = post(&nosuch, &format!("http://nosuch.mcp.test:{traefik_like}/mcp"), None, INITIALIZE);
    assert_eq!(answer.send().await.unwrap().status(), 404);

    // SSE through the proxy: the session's GET stream stays open, and an event sent on it
    // arrives while it is open; a buffering proxy would hold it back until the stream ended.
    let stream = through
        .get(&url)
        .header("authorization", alice())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut events = stream.bytes_stream();
    let trigger = post(
        &through,
        &url,
        Some(&session),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_trigger_tool_change","arguments":{}}}"#,
    );
    assert_eq!(trigger.send().await.unwrap().status(), 200);
    let mut seen = String::new();
    let arrived = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = events.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("notifications/tools/list_changed") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(arrived, Ok(true), "the event did not cross the proxy while the stream was open: {seen:?}");
    drop(events);

    // A stream cut between the client and the proxy resumes through the proxy: nginx closes its
    // connection to berth when the client's goes, and the GET with Last-Event-ID gets the rest.
    let fx_host = "fx.mcp.test";
    let fx_url = format!("http://{fx_host}:{traefik_like}/mcp");
    let fx = client("127.0.0.3", fx_host, proxy_addr);
    let initialized = post(&fx, &fx_url, None, INITIALIZE).send().await.unwrap();
    assert_eq!(initialized.status(), 200);
    let fx_session = initialized.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let call = r#"{"jsonrpc":"2.0","id":"cut","method":"tools/call","params":{"name":"progress","arguments":{"steps":8,"ms":150},"_meta":{"progressToken":"p"}}}"#;
    let mut first = Messages::from(post(&fx, &fx_url, Some(&fx_session), call).send().await.unwrap()).await;
    assert_eq!(first.next().await.unwrap()["params"]["progress"], 1);
    assert_eq!(first.next().await.unwrap()["params"]["progress"], 2);
    let last = first.last_event_id.clone().expect("an event id through the proxy");
    drop(first);
    let resumed = fx
        .get(&fx_url)
        .header("authorization", alice())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &fx_session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", &last)
        .send()
        .await
        .unwrap();
    let rest = Messages::from(resumed).await.all().await;
    let progress: Vec<i64> = rest.iter().filter_map(|m| m["params"]["progress"].as_i64()).collect();
    assert_eq!(progress, [3, 4, 5, 6, 7, 8], "the rest of the progress, through the proxy: {rest:?}");
    assert_eq!(rest.last().unwrap()["result"]["content"][0]["text"], "8 steps");

    // X-Forwarded-Host from the trusted proxy: Host arrives as `berth`, yet routing works.
    let rewriting = client("127.0.0.3", host, rewriting_addr);
    let answer = post(&rewriting, &format!("http://{host}:{host_rewriting}/mcp"), None, INITIALIZE);
    assert_eq!(answer.send().await.unwrap().status(), 200);
    // The same claim straight from an untrusted peer is ignored: its own Host decides.
    let direct = client("127.0.0.1", "berth", berth_addr);
    let claim = post(&direct, &format!("http://berth:{berth_port}/mcp"), None, INITIALIZE)
        .header("x-forwarded-host", host)
        .header("x-forwarded-for", "203.0.113.98");
    assert_eq!(claim.send().await.unwrap().status(), 403, "an untrusted X-Forwarded-Host must not count");

    // Failed logins are logged with the client's address: through the proxy, the address nginx
    // saw (not the proxy's, nor what the client claimed); directly, the peer's, whatever it claims.
    let wrong = basic("alice", "wrong password");
    let through_wrong =
        through.post(&url).header("authorization", &wrong).header("x-forwarded-for", "203.0.113.99").body(INITIALIZE);
    assert_eq!(through_wrong.send().await.unwrap().status(), 401);
    let direct = client("127.0.0.1", host, berth_addr);
    let direct_wrong = direct
        .post(format!("http://{host}:{berth_port}/mcp"))
        .header("authorization", &wrong)
        .header("x-forwarded-for", "203.0.113.98")
        .body(INITIALIZE);
    assert_eq!(direct_wrong.send().await.unwrap().status(), 401);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let failures = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let failures: Vec<String> = text.lines().filter(|l| l.contains("failed login")).map(str::to_string).collect();
        if failures.len() >= 2 {
            break failures;
        }
        assert!(tokio::time::Instant::now() < deadline, "berth did not log two failed logins:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(failures[0].contains("127.0.0.3"), "{failures:?}");
    assert!(failures[1].contains("127.0.0.1"), "{failures:?}");
    assert!(!failures.iter().any(|l| l.contains("203.0.113.") || l.contains("127.0.0.2")), "{failures:?}");

    processes.nginx.kill().await.unwrap();
    processes.berth.kill().await.unwrap();
}
