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

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::{
    harness::{basic, config_with, fixture_binary},
    process::{Served, berth_command, free_port},
    requests::{self, McpHeaders, initialize},
    sse::Messages,
    wait::{poll, wait_listening},
};

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .expect("nginx is not installed: scripts/test installs it (apt-get install nginx-light)")
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
    berth: Served,
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

/// The protocol version every request of this test speaks.
const VERSION: &str = "2025-06-18";

/// A POST of `body` in protocol [`VERSION`], in `session` if given.
fn post(client: &reqwest::Client, url: &str, session: Option<&str>, body: Value) -> reqwest::RequestBuilder {
    let request = requests::post(client, url).protocol(VERSION).body(body.to_string());
    match session {
        Some(session) => request.session(session),
        None => request,
    }
}

/// Initializes a session at `url` through `client`, which must succeed: its id and the answer.
async fn open(client: &reqwest::Client, url: &str) -> (String, String) {
    let initialized = post(client, url, None, initialize(VERSION)).send().await.unwrap();
    assert_eq!(initialized.status(), 200, "{url}");
    let session = initialized.headers()["mcp-session-id"].to_str().unwrap().to_string();
    (session, initialized.text().await.unwrap())
}

/// A GET of `session`'s stream in protocol [`VERSION`].
fn get_stream(client: &reqwest::Client, url: &str, session: &str) -> reqwest::RequestBuilder {
    requests::get_stream(client, url).session(session).protocol(VERSION)
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
            fixture_binary().display()
        )),
    )
    .unwrap();
    let mut berth = berth_command();
    berth.args(["serve", "--config"]).arg(&config);
    let berth = Served::spawn(berth, dir.path().join("berth.log")).await;
    let (berth_addr, log) = (berth.addr, berth.log.clone());
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
    let proxy_addr: SocketAddr = format!("127.0.0.1:{traefik_like}").parse().unwrap();
    let rewriting_addr: SocketAddr = format!("127.0.0.1:{host_rewriting}").parse().unwrap();
    wait_listening(proxy_addr, "nginx").await;

    // Host routing: conformance.mcp.test/mcp reaches backend `conformance` through the proxy.
    let host = "conformance.mcp.test";
    let url = format!("http://{host}:{traefik_like}/mcp");
    let through = client("127.0.0.3", host, proxy_addr);
    let (session, answer) = open(&through, &url).await;
    assert!(answer.contains("serverInfo"), "{answer}");
    let notified = post(&through, &url, Some(&session), requests::initialized());
    assert_eq!(notified.send().await.unwrap().status(), 202);
    // The proxy answers 421 for hosts without a router; berth answers 404 for unknown backends.
    let unrouted = client("127.0.0.3", "elsewhere.test", proxy_addr);
    let answer = post(&unrouted, &format!("http://elsewhere.test:{traefik_like}/mcp"), None, initialize(VERSION));
    assert_eq!(answer.send().await.unwrap().status(), 421);
    let nosuch = client("127.0.0.3", "nosuch.mcp.test", proxy_addr);
    let answer = post(&nosuch, &format!("http://nosuch.mcp.test:{traefik_like}/mcp"), None, initialize(VERSION));
    assert_eq!(answer.send().await.unwrap().status(), 404);

    // SSE through the proxy: the session's GET stream stays open, and an event sent on it
    // arrives while it is open; a buffering proxy would hold it back until the stream ended.
    let stream = get_stream(&through, &url, &session).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut events = Messages::from(stream).await;
    let trigger = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "test_trigger_tool_change", "arguments": {}}});
    assert_eq!(post(&through, &url, Some(&session), trigger).send().await.unwrap().status(), 200);
    let changed = "notifications/tools/list_changed";
    let arrived = tokio::time::timeout(Duration::from_secs(30), events.find_method(changed)).await;
    assert!(
        arrived.as_ref().is_ok_and(Option::is_some),
        "the event did not cross the proxy while the stream was open: {arrived:?}"
    );
    drop(events);

    // A stream cut between the client and the proxy resumes through the proxy: nginx closes its
    // connection to berth when the client's goes, and the GET with Last-Event-ID gets the rest.
    let fx_host = "fx.mcp.test";
    let fx_url = format!("http://{fx_host}:{traefik_like}/mcp");
    let fx = client("127.0.0.3", fx_host, proxy_addr);
    let (fx_session, _) = open(&fx, &fx_url).await;
    let call = json!({"jsonrpc": "2.0", "id": "cut", "method": "tools/call",
        "params": {"name": "progress", "arguments": {"steps": 8, "ms": 150}, "_meta": {"progressToken": "p"}}});
    let mut first = Messages::from(post(&fx, &fx_url, Some(&fx_session), call).send().await.unwrap()).await;
    assert_eq!(first.next().await.unwrap()["params"]["progress"], 1);
    assert_eq!(first.next().await.unwrap()["params"]["progress"], 2);
    let last = first.last_event_id.clone().expect("an event id through the proxy");
    drop(first);
    let resumed = get_stream(&fx, &fx_url, &fx_session).last_event_id(&last).send().await.unwrap();
    let rest = Messages::from(resumed).await.all().await;
    let progress: Vec<i64> = rest.iter().filter_map(|m| m["params"]["progress"].as_i64()).collect();
    assert_eq!(progress, [3, 4, 5, 6, 7, 8], "the rest of the progress, through the proxy: {rest:?}");
    assert_eq!(rest.last().unwrap()["result"]["content"][0]["text"], "8 steps");

    // X-Forwarded-Host from the trusted proxy: Host arrives as `berth`, yet routing works.
    let rewriting = client("127.0.0.3", host, rewriting_addr);
    let answer = post(&rewriting, &format!("http://{host}:{host_rewriting}/mcp"), None, initialize(VERSION));
    assert_eq!(answer.send().await.unwrap().status(), 200);
    // The same claim straight from an untrusted peer is ignored: its own Host decides.
    let direct = client("127.0.0.1", "berth", berth_addr);
    let claim = post(&direct, &format!("http://berth:{berth_port}/mcp"), None, initialize(VERSION))
        .header("x-forwarded-host", host)
        .header("x-forwarded-for", "203.0.113.98");
    assert_eq!(claim.send().await.unwrap().status(), 403, "an untrusted X-Forwarded-Host must not count");

    // Failed logins are logged with the client's address: through the proxy, the address nginx
    // saw (not the proxy's, nor what the client claimed); directly, the peer's, whatever it claims.
    let wrong = basic("alice", "wrong password");
    let login = initialize(VERSION).to_string();
    let through_wrong = through
        .post(&url)
        .header("authorization", &wrong)
        .header("x-forwarded-for", "203.0.113.99")
        .body(login.clone());
    assert_eq!(through_wrong.send().await.unwrap().status(), 401);
    let direct = client("127.0.0.1", host, berth_addr);
    let direct_wrong = direct
        .post(format!("http://{host}:{berth_port}/mcp"))
        .header("authorization", &wrong)
        .header("x-forwarded-for", "203.0.113.98")
        .body(login);
    assert_eq!(direct_wrong.send().await.unwrap().status(), 401);
    let failures = poll(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).unwrap();
        let failures: Vec<String> = text.lines().filter(|l| l.contains("failed login")).map(str::to_string).collect();
        std::future::ready(if failures.len() >= 2 { Ok(failures) } else { Err(text) })
    })
    .await
    .unwrap_or_else(|text| panic!("berth did not log two failed logins:\n{text}"));
    assert!(failures[0].contains("127.0.0.3"), "{failures:?}");
    assert!(failures[1].contains("127.0.0.1"), "{failures:?}");
    assert!(!failures.iter().any(|l| l.contains("203.0.113.") || l.contains("127.0.0.2")), "{failures:?}");

    processes.nginx.kill().await.unwrap();
    processes.berth.child.kill().await.unwrap();
}
