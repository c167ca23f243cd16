//! The `berth` binary itself: exit codes, `check`, `hash-password`, `--version`, and a real
//! `serve` stopped by SIGTERM.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;

use crate::{
    harness::{basic, config_with, docker_available, workspace_bin},
    raw::RawSession,
};

pub(crate) fn berth() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .env_remove("BERTH_CONFIG")
        .env_remove("BERTH_LISTEN")
        .env_remove("BERTH_AUTH_USERNAME")
        .env_remove("BERTH_AUTH_PASSWORD")
        .env("RUST_LOG", "info");
    command
}

#[test]
fn version() {
    let output = berth().arg("--version").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("berth "));
}

#[test]
fn bad_configs_exit_64_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let table = [
        ("[server]\nlisten = \"0.0.0.0:8080\"\nlisten_typo = 1\n", ":3:", "listen_typo"),
        ("auth = \"none\"\n[backends.fs]\nkind = \"native\"\n", ":2", "backends.fs.service"),
        ("[backends.conformance]\nkind = \"native\"\n", "", "no users"),
    ];
    for (text, line, field) in table {
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, text).unwrap();
        let output = berth().args(["check", "--config"]).arg(&path).output().unwrap();
        assert_eq!(output.status.code(), Some(64), "{text}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("{}{line}", path.display())), "{stderr}");
        assert!(stderr.contains(field), "{stderr}");
    }
    let missing = berth().args(["serve", "--config", "/nonexistent/berth.toml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(64));
}

#[test]
fn no_users_no_start_unless_auth_none() {
    let output = berth().args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("BERTH_AUTH_USERNAME"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.toml");
    std::fs::write(&path, "auth = \"none\"\n[backends.conformance]\nkind = \"native\"\n").unwrap();
    let check = berth().args(["check", "--config"]).arg(&path).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

#[test]
fn hash_password_prints_a_working_htpasswd_line() {
    let mut child = berth()
        .args(["hash-password", "--user", "carol", "--cost", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"p4ss word\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let line = String::from_utf8(output.stdout).unwrap();
    let (user, hash) = line.trim().split_once(':').unwrap();
    assert_eq!(user, "carol");
    assert!(hash.starts_with("$2b$04$"), "{hash}");
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    std::fs::write(&users, &line).unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!("[auth]\nusers_file = \"{}\"\n[backends.conformance]\nkind = \"native\"\n", users.display()),
    )
    .unwrap();
    let check = berth().args(["check", "--config"]).arg(&config).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

/// A `berth serve` child whose listening address was read from its log, and the log so far
/// (berth's stderr, kept whole).
pub(crate) struct Served {
    child: Child,
    pub(crate) addr: String,
    log: Arc<Mutex<String>>,
}

impl Served {
    /// Sends SIGTERM, waits for the exit, and answers the exit code and the whole log.
    pub(crate) async fn stop(mut self) -> (Option<i32>, String) {
        // Serving, so its SIGTERM handler is in place (it is installed once serving starts).
        let health = reqwest::get(format!("http://{}/", self.addr)).await.unwrap();
        assert_eq!(health.status(), 200);
        let killed = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "berth did not exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // The log reader ends with berth's stderr; give it a moment to take the last lines.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = self.log.lock().unwrap().clone();
        (status.code(), log)
    }
}

/// Starts `berth serve --listen 127.0.0.1:0` as `command` says and waits until it listens.
pub(crate) fn serve(mut command: Command) -> Served {
    let mut child =
        command.args(["--listen", "127.0.0.1:0"]).env("NO_COLOR", "1").stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let log = Arc::new(Mutex::new(String::new()));
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "berth exited before listening: {}", log.lock().unwrap());
        log.lock().unwrap().push_str(&line);
        if let Some((_, rest)) = line.split_once("berth listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining the log so that berth never blocks on a full pipe.
    let kept = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap_or(0) > 0 {
            kept.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    Served { child, addr, log }
}

fn serve_with_env_users() -> Served {
    let mut command = berth();
    command.arg("serve").env("BERTH_AUTH_USERNAME", "env-user").env("BERTH_AUTH_PASSWORD", "env-pass");
    serve(command)
}

/// `berth serve --config <file holding text>`; the directory must outlive the server.
fn serve_config(dir: &tempfile::TempDir, text: &str) -> Command {
    let path = dir.path().join("berth.toml");
    std::fs::write(&path, text).unwrap();
    let mut command = berth();
    command.args(["serve", "--config"]).arg(path);
    command
}

#[tokio::test]
async fn serve_with_defaults_then_sigterm_exits_zero() {
    let served = serve_with_env_users();
    let client = reqwest::Client::new();
    let health = client.get(format!("http://{}/", served.addr)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = client.get(format!("http://{}/readyz", served.addr)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let authed = client
        .get(format!("http://{}/conformance/mcp", served.addr))
        .header("authorization", basic("env-user", "env-pass"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    // Authenticated, routed to the default `conformance` backend, which wants a session id.
    assert!(authed.status() == 400 || authed.status() == 404 || authed.status() == 405, "{}", authed.status());
    let (code, _) = served.stop().await;
    assert_eq!(code, Some(0));
}

/// Host names take `${ENV}` values like the other fields the README lists: a deployment sets its
/// domain through the environment.
#[tokio::test]
async fn base_domain_takes_its_value_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve_config(
        &dir,
        "[server]\nbase_domain = \"${BERTH_TEST_DOMAIN}\"\n[backends.conformance]\nkind = \"native\"\n",
    );
    command
        .env("BERTH_TEST_DOMAIN", "mcp.example.test")
        .env("BERTH_AUTH_USERNAME", "me")
        .env("BERTH_AUTH_PASSWORD", "pw");
    let served = serve(command);
    let client = reqwest::Client::new();
    let initialize = |host: &'static str| {
        client
            .post(format!("http://{}/mcp", served.addr))
            .header("host", host)
            .header("authorization", basic("me", "pw"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
            .send()
    };
    let routed = initialize("conformance.mcp.example.test").await.unwrap();
    assert_eq!(routed.status(), 200, "the expanded base domain routes to the backend");
    let literal = initialize("conformance.${BERTH_TEST_DOMAIN}").await.unwrap();
    assert_ne!(literal.status(), 200, "the unexpanded text is no domain of berth's");
    let other = initialize("conformance.other.test").await.unwrap();
    assert_ne!(other.status(), 200);
    served.stop().await;
}

/// Runs `berth check` on a file holding `text`, with `configure` applied to the command;
/// answers the exit code, stdout and stderr.
fn check_with(text: &str, configure: impl FnOnce(&mut Command)) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    std::fs::write(&path, text).unwrap();
    let mut command = berth();
    command.args(["check", "--config"]).arg(&path);
    configure(&mut command);
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code(), stdout, String::from_utf8_lossy(&output.stderr).into_owned())
}

fn check(text: &str) -> (Option<i32>, String, String) {
    check_with(text, |_| {})
}

#[test]
fn hash_password_refuses_names_an_htpasswd_line_cannot_hold() {
    for user in ["a:b", ""] {
        let mut child = berth()
            .args(["hash-password", "--user", user, "--cost", "4"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // berth may refuse before it reads the password: a broken pipe here is fine.
        let _ = child.stdin.take().unwrap().write_all(b"p4ss\n");
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "--user {user:?}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "--user {user:?} printed a line: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(stderr.contains("user name") && stderr.contains("`:`"), "--user {user:?}: {stderr}");
    }
}

#[test]
fn listen_addresses_without_a_host_show_the_host_port_form() {
    let (code, _, stderr) = check("auth = \"none\"\n[server]\nlisten = \"8080\"\n");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains(":3:") && stderr.contains("server.listen"), "{stderr}");
    assert!(stderr.contains("HOST:PORT") && stderr.contains("\"0.0.0.0:8080\""), "{stderr}");
    let flag = berth().args(["serve", "--listen", "8080"]).output().unwrap();
    let env = berth().arg("serve").env("BERTH_LISTEN", "localhost:8080").output().unwrap();
    for (how, output, suggested) in [("--listen", flag, "0.0.0.0:8080"), ("BERTH_LISTEN", env, "127.0.0.1:8080")] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{how}: {stderr}");
        assert!(stderr.contains("HOST:PORT") && stderr.contains(suggested), "{how}: {stderr}");
        assert!(stderr.contains("--listen") && stderr.contains("BERTH_LISTEN"), "{how}: {stderr}");
    }
}

#[test]
fn a_configuration_without_backends_is_valid_with_a_warning() {
    let (code, stdout, stderr) = check("auth = \"none\"\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "configuration ok: no backends");
    assert!(stderr.contains("warning") && stderr.contains("no backends: every MCP route answers 404"), "{stderr}");
    let (code, stdout, stderr) = check(&config_with(""));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "configuration ok: backends conformance");
    assert!(stderr.is_empty(), "{stderr}");
}

/// The log at `info` (the default, and `RUST_LOG=info`) is berth's own: rmcp's dumps of every
/// session's initialize parameters stay out, and `auth = "none"` is one consistent line.
#[tokio::test]
async fn the_info_log_is_berths_own_and_says_one_thing_about_auth_none() {
    for rust_log in [None, Some("info")] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = serve_config(&dir, "auth = \"none\"\n[backends.conformance]\nkind = \"native\"\n");
        match rust_log {
            None => command.env_remove("RUST_LOG"),
            Some(filter) => command.env("RUST_LOG", filter),
        };
        let served = serve(command);
        // A session on the native backend: rmcp's own log of it is what must stay out.
        let session = RawSession::open(&format!("http://{}/conformance/mcp", served.addr), json!({})).await;
        assert!(!session.tool("test_simple_text", json!({})).await.is_empty());
        session.delete().await;
        let (code, log) = served.stop().await;
        assert_eq!(code, Some(0), "{log}");
        for chatter in ["peer_info", "InitializeRequestParams", " rmcp::"] {
            assert!(!log.contains(chatter), "RUST_LOG={rust_log:?}: `{chatter}` in the log:\n{log}");
        }
        let about_auth: Vec<&str> = log.lines().filter(|line| line.contains("auth = \"none\"")).collect();
        assert_eq!(about_auth.len(), 1, "RUST_LOG={rust_log:?}: one line about auth = \"none\":\n{log}");
        assert!(about_auth[0].contains("localhost"), "{log}");
        assert!(!log.contains("any Host header is accepted"), "{log}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, log) = serve(serve_config(&dir, "auth = \"none\"\n")).stop().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("WARN") && log.contains("no backends: every MCP route answers 404"), "{log}");
}

/// A process backend gets `PATH`, `HOME`, the locale and its own `env`, not the operator's
/// whole environment, unless it says `inherit_env = true`; `BERTH_*` never reaches it.
#[tokio::test]
async fn process_backends_get_a_minimal_environment_unless_they_inherit_it() {
    let fixture = workspace_bin("berth-fixtures", "berth-fixture-stdio");
    let dir = tempfile::tempdir().unwrap();
    let text = config_with(&format!(
        "[backends.minimal]\nkind = \"process\"\ncommand = \"{0}\"\nenv = {{ FROM_CONFIG = \"yes\" }}\n\n\
         [backends.inherited]\nkind = \"process\"\ncommand = \"{0}\"\ninherit_env = true\n",
        fixture.display()
    ));
    let mut command = serve_config(&dir, &text);
    command
        .env("OPERATOR_SECRET", "the operator's")
        .env("BERTH_TEST_PRIVATE", "berth's own")
        .env("HOME", "/home/berth-test")
        .env("LANG", "C.UTF-8")
        .env("LC_TIME", "C");
    let served = serve(command);
    let unset = "<unset>";
    /// A variable and what the server sees of it (`None`: anything set).
    type Seen<'a> = (&'a str, Option<&'a str>);
    let table: &[(&str, &[Seen<'_>])] = &[
        (
            "minimal",
            &[
                ("OPERATOR_SECRET", Some(unset)),
                ("BERTH_TEST_PRIVATE", Some(unset)),
                ("FROM_CONFIG", Some("yes")),
                ("HOME", Some("/home/berth-test")),
                ("LANG", Some("C.UTF-8")),
                ("LC_TIME", Some("C")),
                ("PATH", None),
            ],
        ),
        (
            "inherited",
            &[
                ("OPERATOR_SECRET", Some("the operator's")),
                ("BERTH_TEST_PRIVATE", Some(unset)),
                ("HOME", Some("/home/berth-test")),
                ("PATH", None),
            ],
        ),
    ];
    for (backend, variables) in table {
        let session = RawSession::open(&format!("http://{}/{backend}/mcp", served.addr), json!({})).await;
        for (name, expected) in *variables {
            let value = session.tool("env", json!({"name": name})).await;
            match expected {
                Some(expected) => assert_eq!(&value, expected, "{backend}: {name}"),
                None => assert!(value != unset && !value.is_empty(), "{backend}: {name} is {value}"),
            }
        }
    }
    let (code, log) = served.stop().await;
    assert_eq!(code, Some(0), "{log}");
}

/// Builds a tiny image from scratch (no pull: nothing leaves this machine) tagged `tag`.
fn scratch_image(tag: &str) {
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\nCOPY Dockerfile /\n").unwrap();
    let status =
        Command::new("docker").args(["build", "-q", "-t", tag]).arg(context.path()).stdout(Stdio::null()).status();
    assert!(status.unwrap().success(), "docker build {tag}");
}

/// `berth check` verifies what would otherwise fail at the first call, one line per problem
/// naming file, line, backend and field, and exits 69; a Docker engine that does not answer is
/// a warning.
#[test]
fn check_finds_what_would_fail_at_the_first_call() {
    let fixture = workspace_bin("berth-fixtures", "berth-fixture-stdio");
    let dir = tempfile::tempdir().unwrap();
    let not_executable = dir.path().join("server.py");
    std::fs::write(&not_executable, "print()\n").unwrap();
    let empty_path = dir.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let fixture_dir = fixture.parent().unwrap().display().to_string();
    let backends = [
        ("missing", "command = \"/nonexistent/mcp-server\"".into(), Some(("command", "/nonexistent/mcp-server"))),
        ("unknown", "command = \"berth-surely-not-installed\"".into(), Some(("command", "not found on PATH"))),
        ("uv", "command = \"uvx\"\nargs = [\"mcp-server-fetch\"]".into(), Some(("command", "install uv"))),
        ("plain-file", format!("command = \"{}\"", not_executable.display()), Some(("command", "not executable"))),
        (
            "nowhere",
            format!("command = \"{}\"\ncwd = \"/nonexistent/dir\"", fixture.display()),
            Some(("cwd", "/nonexistent/dir")),
        ),
        ("good", format!("command = \"{}\"", fixture.display()), None),
        // Looked up on the PATH the server gets, which its `env` may set.
        ("own-path", format!("command = \"berth-fixture-stdio\"\nenv = {{ PATH = \"{fixture_dir}\" }}"), None),
    ];
    let mut text = config_with("");
    let mut expected = Vec::new();
    for (name, table, problem) in &backends {
        let line = text.lines().count() + 1;
        text.push_str(&format!("[backends.{name}]\nkind = \"process\"\n{table}\n\n"));
        if let Some((field, needle)) = problem {
            expected.push((format!(":{line}: `backends.{name}.{field}`"), *needle));
        }
    }
    let (code, stdout, stderr) = check_with(&text, |command| {
        command.env("PATH", &empty_path);
    });
    assert_eq!(code, Some(69), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let problems: Vec<&str> = stderr.lines().filter(|line| line.contains("`backends.")).collect();
    assert_eq!(problems.len(), expected.len(), "one line per problem:\n{stderr}");
    for (location, needle) in expected {
        let line =
            problems.iter().find(|line| line.contains(&location)).unwrap_or_else(|| panic!("{location}:\n{stderr}"));
        assert!(line.contains(needle), "{line}");
    }
    // Without problems the file is fine; a Docker engine that does not answer is a warning.
    let docker = "[backends.box]\nkind = \"docker\"\nimage = \"berth-test/surely-absent:never\"\n";
    let (code, stdout, stderr) = check_with(&config_with(docker), |command| {
        command.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    });
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "configuration ok: backends box, conformance");
    assert!(stderr.contains("warning") && stderr.contains("Docker engine") && stderr.contains("box"), "{stderr}");
}

/// Docker backends: the image must be present (or known to its registry with `if-missing`),
/// bind-mount sources must exist.
#[test]
fn check_asks_the_docker_engine_about_images() {
    if !docker_available() {
        return;
    }
    let tag = format!("berth-test/{}:check", crate::harness::unique_name("preflight"));
    scratch_image(&tag);
    let dir = tempfile::tempdir().unwrap();
    let backends = [
        ("present", format!("image = \"{tag}\"\nvolumes = [\"{}:/data\"]", dir.path().display()), None),
        ("absent", "image = \"berth-test/surely-absent:never\"".to_string(), Some(("image", "not present"))),
        (
            "unpullable",
            "image = \"registry.invalid/berth/absent:1\"\nimage_pull = \"if-missing\"".into(),
            Some(("image", "registry.invalid/berth/absent:1")),
        ),
        (
            "no-source",
            format!("image = \"{tag}\"\nvolumes = [\"/nonexistent/berth-source:/data\"]"),
            Some(("volumes", "/nonexistent/berth-source")),
        ),
    ];
    let mut text = config_with("");
    let mut expected = Vec::new();
    for (name, table, problem) in &backends {
        let line = text.lines().count() + 1;
        text.push_str(&format!("[backends.{name}]\nkind = \"docker\"\n{table}\n\n"));
        if let Some((field, needle)) = problem {
            expected.push((format!(":{line}: `backends.{name}.{field}`"), *needle));
        }
    }
    let (code, _, stderr) = check(&text);
    let _ = Command::new("docker").args(["rmi", &tag]).stdout(Stdio::null()).status();
    assert_eq!(code, Some(69), "{stderr}");
    let problems: Vec<&str> = stderr.lines().filter(|line| line.contains("`backends.")).collect();
    assert_eq!(problems.len(), expected.len(), "one line per problem:\n{stderr}");
    for (location, needle) in expected {
        let line =
            problems.iter().find(|line| line.contains(&location)).unwrap_or_else(|| panic!("{location}:\n{stderr}"));
        assert!(line.contains(needle), "{line}");
    }
}

/// `serve` logs what `check` would report as warnings, and serves anyway.
#[tokio::test]
async fn serve_warns_about_what_check_finds_and_starts_anyway() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_with("[backends.missing]\nkind = \"process\"\ncommand = \"/nonexistent/mcp-server\"\n");
    let served = serve(serve_config(&dir, &text));
    let health = reqwest::get(format!("http://{}/", served.addr)).await.unwrap();
    assert_eq!(health.status(), 200);
    let (code, log) = served.stop().await;
    assert_eq!(code, Some(0), "{log}");
    let warning =
        log.lines().find(|line| line.contains("`backends.missing.command`")).unwrap_or_else(|| panic!("{log}"));
    assert!(warning.contains("WARN") && warning.contains("/nonexistent/mcp-server"), "{warning}");
}

#[test]
fn check_probe_warns_about_a_shared_server_that_keeps_per_user_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    // server-everything declares tasks and logging; the fixture declares neither.
    let fixture = crate::harness::fixture_binary();
    let config = format!(
        "{}\n[backends.plain]\nkind = \"process\"\ncommand = \"{}\"\n",
        crate::everything::process_config(),
        fixture.display()
    );
    std::fs::write(&path, config).unwrap();
    let output = berth().args(["check", "--probe", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: backend `every-proc` is shared, and its server declares tasks and logging"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("`every-proc-solo`") && !stderr.contains("`plain`"),
        "per-session and plain servers are not flagged: {stderr}"
    );
    // Without --probe nothing is started, and nothing is said.
    let quiet = berth().args(["check", "--config"]).arg(&path).output().unwrap();
    assert!(quiet.status.success() && !String::from_utf8_lossy(&quiet.stderr).contains("is shared"));
}

/// `berth status` prints a running berth's backends as a table, read from its admin listener
/// with an admin's credentials (the password from the environment or standard input); a wrong
/// password exits 1 with the listener's message.
#[tokio::test]
async fn status_prints_the_backends_of_a_running_berth() {
    let gateway = crate::harness::Berth::start(&crate::admin::admin_config("", "")).await;
    let session = RawSession::open(&gateway.mcp_url("fx"), json!({})).await;
    session.tool("echo", json!({"text": "hi"})).await;
    let admin = gateway.admin_url("");
    let run = move |password: &'static str, stdin: bool| {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = berth();
            command.args(["status", "--admin", &admin, "--user", crate::harness::USER]);
            if stdin {
                command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
                let mut child = command.spawn().unwrap();
                std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{password}\n").as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            } else {
                command.env("BERTH_ADMIN_PASSWORD", password).output().unwrap()
            }
        })
    };
    let output = run(crate::harness::PASSWORD, false).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("BACKEND  KIND     STATE    READY  INSTANCES  SESSIONS  RESTARTS  LAST ERROR"),
        "{stdout}"
    );
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells, ["fx", "process", "running", "yes", "1", "1", "0", "-"], "{stdout}");
    // The password on standard input works as well.
    let output = run(crate::harness::PASSWORD, true).await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), stdout);
    // A wrong one is refused, with the listener's message.
    let output = run("wrong", false).await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("berth status: ") && stderr.contains("answered 401"), "{stderr}");
}
