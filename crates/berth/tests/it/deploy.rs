//! Deployment commands through the real binary: `healthcheck`, `client-config` (each snippet
//! parsed, and used by real clients: mcp-remote over stdio and the official Python SDK), and
//! `traefik labels` against the committed compose files.

use std::{collections::BTreeSet, path::Path, process::Stdio, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

use crate::{
    harness::{Berth, PASSWORD, USER, alice, python, repo_root},
    process::berth_command,
};

/// Runs `berth args...` with `stdin`, returning (exit code, stdout, stderr).
async fn berth_run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child =
        berth_command().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    let output = child.wait_with_output().await.unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn healthcheck_exit_codes() {
    let berth = Berth::default().await;
    let port = berth.addr.port().to_string();
    let ok = berth_run(&["healthcheck", "--port", &port], "").await;
    assert_eq!(ok.0, 0, "{ok:?}");
    let url = berth.url("/");
    assert_eq!(berth_run(&["healthcheck", "--url", &url], "").await.0, 0);
    // Any answer but 200 is unhealthy, and so is silence.
    let missing = berth.mcp_url("conformance");
    let unauthorized = berth_run(&["healthcheck", "--url", &missing], "").await;
    assert_eq!(unauthorized.0, 1);
    assert!(unauthorized.2.contains("401"), "{unauthorized:?}");
    berth.stop().await;
    let closed = berth_run(&["healthcheck", "--port", &port], "").await;
    assert_eq!(closed.0, 1, "{closed:?}");
    // The port comes from the configuration, as in the image.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    let other = Berth::default().await;
    std::fs::write(&config, format!("[server]\nlisten = \"0.0.0.0:{}\"\n", other.addr.port())).unwrap();
    let from_config = berth_run(&["healthcheck", "--config", config.to_str().unwrap()], "").await;
    assert_eq!(from_config.0, 0, "{from_config:?}");
    other.stop().await;
}

/// Every snippet, generated for a user whose password comes on standard input.
async fn snippet(client: &str, url: &str) -> String {
    let (code, stdout, stderr) =
        berth_run(&["client-config", "--client", client, "--url", url, "--user", USER], &format!("{PASSWORD}\n")).await;
    assert_eq!(code, 0, "{client}: {stderr}");
    stdout
}

#[tokio::test]
async fn every_client_snippet_parses_into_the_expected_shape() {
    let url = "https://fs.mcp.example.com/mcp";
    let credential = alice();
    let desktop: Value = serde_json::from_str(&snippet("claude-desktop", url).await).unwrap();
    let entry = &desktop["mcpServers"]["fs"];
    assert_eq!(entry["command"], "npx");
    assert_eq!(entry["args"][1], "mcp-remote@0.15.1");
    assert_eq!(entry["env"]["BERTH_AUTH"], credential.as_str());
    assert!(entry["args"].as_array().unwrap().contains(&Value::from("Authorization:${BERTH_AUTH}")));

    let code = snippet("claude-code", url).await;
    let (command, file) = code.split_once("\n\n").unwrap();
    assert_eq!(
        command,
        "claude mcp add --transport http fs https://fs.mcp.example.com/mcp --header \"Authorization: ${BERTH_AUTH}\""
    );
    let file: Value = serde_json::from_str(file).unwrap();
    assert_eq!(file["mcpServers"]["fs"]["type"], "http");
    assert_eq!(file["mcpServers"]["fs"]["headers"]["Authorization"], "${BERTH_AUTH}");

    let cursor: Value = serde_json::from_str(&snippet("cursor", url).await).unwrap();
    assert_eq!(cursor["mcpServers"]["fs"]["url"], url);
    assert_eq!(cursor["mcpServers"]["fs"]["headers"]["Authorization"], "${env:BERTH_AUTH}");

    let vscode: Value = serde_json::from_str(&snippet("vscode", url).await).unwrap();
    let input = &vscode["inputs"][0];
    assert_eq!((&input["type"], &input["password"]), (&Value::from("promptString"), &Value::from(true)));
    let server = &vscode["servers"]["fs"];
    assert_eq!(server["type"], "http");
    assert_eq!(server["headers"]["Authorization"], format!("${{input:{}}}", input["id"].as_str().unwrap()));

    let metamcp: Value = serde_json::from_str(&snippet("metamcp", url).await).unwrap();
    let server = &metamcp["mcpServers"]["fs"];
    assert_eq!(server["type"], "streamable_http");
    assert_eq!(server["headers"]["Authorization"], credential.as_str());
    assert_eq!(server["bearerToken"], "");

    let remote = snippet("mcp-remote", url).await;
    assert_eq!(
        remote.trim(),
        "npx -y mcp-remote@0.15.1 https://fs.mcp.example.com/mcp --transport http-only --header 'Authorization:${BERTH_AUTH}'"
    );
    // The pinned mcp-remote is the one the tests run.
    let package: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("tools/package.json")).unwrap()).unwrap();
    assert_eq!(
        format!("mcp-remote@{}", package["devDependencies"]["mcp-remote"].as_str().unwrap()),
        "mcp-remote@0.15.1"
    );
    // Without --user, nothing is read and no credential appears.
    let (code, stdout, _) = berth_run(&["client-config", "--client", "metamcp", "--url", url], "").await;
    assert_eq!(code, 0);
    assert!(stdout.contains("Basic <base64 of user:password>"), "{stdout}");
}

/// Reads JSON-RPC lines from mcp-remote until the answer with `id`.
async fn answer(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>, id: u64) -> Value {
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Ok(message) = serde_json::from_str::<Value>(&line)
                && message["id"] == id
            {
                return message;
            }
        }
        panic!("mcp-remote closed its output before answering {id}");
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("mcp-remote answers")
}

/// Runs the Claude Desktop snippet for `url` through the real mcp-remote: initialize, list the
/// tools and call one.
async fn drive_mcp_remote(url: &str) {
    let desktop: Value = serde_json::from_str(&snippet("claude-desktop", url).await).unwrap();
    let entry = &desktop["mcpServers"]["conformance"];
    let args: Vec<String> = entry["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    // `npx -y mcp-remote@<pinned>` is the installed, pinned copy under tools/.
    assert_eq!(&args[..2], ["-y", "mcp-remote@0.15.1"]);
    let tools = repo_root().join("tools/node_modules/.bin");
    assert!(tools.join("mcp-remote").exists(), "mcp-remote is not installed: run scripts/test (npm ci in tools/)");
    let auth_dir = tempfile::tempdir().unwrap();
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
    let mut child = Command::new(tools.join("mcp-remote"))
        .args(&args[2..])
        .env("PATH", path)
        .env("MCP_REMOTE_CONFIG_DIR", auth_dir.path())
        .env("BERTH_AUTH", entry["env"]["BERTH_AUTH"].as_str().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let send = |message: Value| format!("{message}\n");
    stdin
        .write_all(
            send(serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "claude-desktop-stand-in", "version": "0"}}}))
            .as_bytes(),
        )
        .await
        .unwrap();
    let initialized = answer(&mut lines, 1).await;
    assert!(initialized["result"]["serverInfo"].is_object(), "{initialized}");
    stdin
        .write_all(send(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).as_bytes())
        .await
        .unwrap();
    stdin
        .write_all(send(serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).as_bytes())
        .await
        .unwrap();
    let listed = answer(&mut lines, 2).await;
    let names: Vec<&str> =
        listed["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"test_simple_text"), "{listed}");
    stdin
        .write_all(
            send(serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "test_simple_text", "arguments": {}}}))
            .as_bytes(),
        )
        .await
        .unwrap();
    let called = answer(&mut lines, 3).await;
    assert_eq!(called["result"]["content"][0]["type"], "text", "{called}");
    drop(stdin);
    let _ = child.kill().await;
}

#[tokio::test]
async fn claude_desktop_snippet_works_through_mcp_remote() {
    let berth = Berth::default().await;
    drive_mcp_remote(&format!("http://127.0.0.1:{}/conformance/mcp", berth.addr.port())).await;
    berth.stop().await;
    // mcp-remote refuses plain HTTP to any other host unless it is given --allow-http: a
    // loopback address other than 127.0.0.1 stands for a server on a private network.
    let berth =
        Berth::start_on(&crate::harness::config_with(""), &berth::NativeRegistry::builtin(), "127.0.0.2:0").await;
    drive_mcp_remote(&format!("http://127.0.0.2:{}/conformance/mcp", berth.addr.port())).await;
    berth.stop().await;
}

/// Which URLs mcp-remote 0.15.1 takes without `--allow-http` (its `parseCommandLineArgs`):
/// `https:`, and `http:` only for the host names `localhost` and `127.0.0.1`.
#[tokio::test]
async fn mcp_remote_gets_allow_http_exactly_where_it_needs_it() {
    let table = [
        ("https://fs.mcp.example.com/mcp", false),
        ("http://127.0.0.1:8080/fs/mcp", false),
        ("http://localhost:8080/fs/mcp", false),
        ("http://LocalHost:8080/fs/mcp", false),
        ("http://mcp.internal:8080/fs/mcp", true),
        ("http://192.168.1.10:8080/fs/mcp", true),
        ("http://127.0.0.2:8080/fs/mcp", true),
        ("http://[::1]:8080/fs/mcp", true),
    ];
    for (url, allow_http) in table {
        let desktop: Value = serde_json::from_str(&snippet("claude-desktop", url).await).unwrap();
        let args = desktop["mcpServers"]["fs"]["args"].as_array().unwrap().clone();
        assert_eq!(args.contains(&Value::from("--allow-http")), allow_http, "claude-desktop {url}: {args:?}");
        let line = snippet("mcp-remote", url).await;
        assert_eq!(line.split_whitespace().any(|word| word == "--allow-http"), allow_http, "mcp-remote {url}: {line}");
    }
}

/// Every berth endpoint ends in `/mcp`: a URL that does not is refused (64) rather than written
/// into a client that would get 404s.
#[tokio::test]
async fn client_config_refuses_urls_that_are_not_mcp_endpoints() {
    for url in [
        "https://mcp.example.com/fs",
        "https://mcp.example.com/",
        "https://fs.mcp.example.com",
        "https://mcp.example.com/fs/mcp/tools",
    ] {
        let (code, stdout, stderr) = berth_run(&["client-config", "--client", "cursor", "--url", url], "").await;
        assert_eq!(code, 64, "{url}: {stderr}");
        assert!(stdout.is_empty(), "{url}: {stdout}");
        assert!(stderr.contains(url) && stderr.contains("/<backend>/mcp"), "{url}: {stderr}");
    }
    let (code, stdout, stderr) =
        berth_run(&["client-config", "--client", "cursor", "--url", "https://mcp.example.com/fs/mcp/"], "").await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("https://mcp.example.com/fs/mcp/"), "{stdout}");
}

/// `.env` files hold the credentials compose reads (`BERTH_AUTH_*`): git must not offer to
/// commit them, and `docker build` must not copy them into an image.
#[test]
fn dot_env_files_stay_out_of_git_and_docker_build_contexts() {
    let root = repo_root();
    let secrets = [".env", "deploy/.env", "deploy/coolify/.env", ".env.production", "berth.env", "deploy/prod.env"];
    for path in secrets {
        let ignored = std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["check-ignore", "-q", "--no-index", path])
            .status()
            .unwrap();
        assert!(ignored.success(), "git does not ignore {path}");
    }
    let kept = ["examples/berth.toml", ".env.example", "crates/berth/src/config.rs"];
    for path in kept {
        let ignored = std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["check-ignore", "-q", "--no-index", path])
            .status()
            .unwrap();
        assert!(!ignored.success(), "git ignores {path}");
    }
    if !crate::harness::docker_available() {
        return;
    }
    // A real build of a context holding them, with the repository's .dockerignore.
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(root.join(".dockerignore"), context.path().join(".dockerignore")).unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\nCOPY . /context/\n").unwrap();
    for path in secrets.iter().chain(&["examples/berth.toml", ".env.example"]) {
        let file = context.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, "BERTH_AUTH_PASSWORD=secret\n").unwrap();
    }
    let tag = format!("berth-test/{}:context", crate::harness::unique_name("dockerignore"));
    let docker = |args: &[&str]| std::process::Command::new("docker").args(args).output().unwrap();
    let built = docker(&["build", "-q", "-t", &tag, context.path().to_str().unwrap()]);
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let created = docker(&["create", &tag, "/none"]);
    let container = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("docker cp {container}:/context - | tar -t"))
        .output()
        .unwrap();
    docker(&["rm", &container]);
    docker(&["rmi", &tag]);
    let files = String::from_utf8_lossy(&listing.stdout);
    assert!(files.lines().any(|f| f == "context/examples/berth.toml"), "{files}");
    for path in secrets {
        assert!(!files.lines().any(|f| f == format!("context/{path}")), "{path} reached the image:\n{files}");
    }
}

#[tokio::test]
async fn metamcp_headers_work_with_the_python_sdk() {
    let berth = Berth::default().await;
    let url = berth.mcp_url("conformance");
    let metamcp: Value = serde_json::from_str(&snippet("metamcp", &url).await).unwrap();
    let server = &metamcp["mcpServers"]["conformance"];
    let output = Command::new(python())
        .arg(repo_root().join("tools/mcp_client.py"))
        .arg(server["url"].as_str().unwrap())
        .arg(server["headers"].to_string())
        .arg("test_simple_text")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["tools"].as_array().unwrap().contains(&Value::from("test_simple_text")), "{report}");
    assert_eq!(report["is_error"], false, "{report}");
    assert!(!report["result"].as_array().unwrap().is_empty(), "{report}");
    berth.stop().await;
}

/// The quoted list items of the `labels:` block of service `service` in a compose file.
fn compose_labels(file: &str, service: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let mut in_service = false;
    let mut in_labels = false;
    let mut labels = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") && !line.trim_start().starts_with('#') {
            in_service = line.trim() == format!("{service}:");
            in_labels = false;
        } else if in_service && line.trim() == "labels:" {
            in_labels = true;
        } else if in_labels && line.trim_start().starts_with("- ") {
            labels.insert(line.trim().to_string());
        } else if in_labels && !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            in_labels = false;
        }
    }
    labels
}

#[tokio::test]
async fn traefik_labels_match_the_committed_compose_files() {
    let config = repo_root().join("deploy/berth.toml");
    let config = config.to_str().unwrap();
    let table: &[(&str, &[&str])] = &[
        ("docker-compose.yml", &[]),
        ("docker-compose.wildcard.yml", &["--wildcard", "--resolver", "letsencrypt-dns"]),
    ];
    for (file, extra) in table {
        let mut args = vec!["traefik", "labels", "--config", config];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = berth_run(&args, "").await;
        assert_eq!(code, 0, "{stderr}");
        let generated: BTreeSet<String> = stdout.lines().map(|l| l.trim().to_string()).collect();
        let committed = compose_labels(file, "berth");
        assert!(!generated.is_empty());
        assert_eq!(
            generated,
            committed,
            "{file}: regenerate its labels with `berth traefik labels {}`",
            extra.join(" ")
        );
    }
    // The image's configuration is valid, with users from the environment as in the image.
    let parsed = berth::Config::load(Path::new(config)).unwrap();
    let env = |name: &str| name.starts_with("BERTH_AUTH_").then(|| "example".to_string());
    berth::Gateway::build_with_env(&parsed, &berth::NativeRegistry::builtin(), &env).unwrap();
}
