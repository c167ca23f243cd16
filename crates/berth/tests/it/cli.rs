//! The `berth` binary itself: exit codes, `check`, `hash-password`, `--version`, and a real
//! `serve` stopped by SIGTERM.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    harness::basic,
    process::{Served, berth_command, berth_std_command},
};

fn berth() -> Command {
    let mut command = berth_std_command();
    command.env("RUST_LOG", "info");
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

#[tokio::test]
async fn serve_with_defaults_then_sigterm_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = berth_command();
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("BERTH_AUTH_USERNAME", "env-user")
        .env("BERTH_AUTH_PASSWORD", "env-pass");
    let mut served = Served::spawn(command, dir.path().join("berth.log")).await;
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
    let killed = Command::new("kill").args(["-TERM", &served.child.id().unwrap().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), served.child.wait())
        .await
        .expect("berth did not exit after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
