//! The audit log: JSON lines with every field after real traffic, arguments only when asked,
//! SIGUSR1 reopening after logrotate's rename, rotation at `max_size`, and a log that cannot be
//! written, which never stops berth.

use std::path::Path;

use serde_json::{Value, json};
use tokio::process::Command;

use crate::{
    admin::{admin_config, scrape, value},
    harness::{Berth, USER, basic, http},
    process::{Served, berth_command, free_port},
    raw::RawSession,
    wait::{wait_for, wait_until},
};

/// Every field an audit line has.
const FIELDS: [&str; 13] = [
    "ts",
    "event",
    "user",
    "client_addr",
    "backend",
    "session",
    "method",
    "name",
    "outcome",
    "status",
    "duration_ms",
    "request_bytes",
    "response_bytes",
];

/// The lines of an audit file, parsed (each must be JSON).
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

/// Waits until `path` holds a line matching `wanted`, and answers it.
async fn line_where(path: &Path, wanted: impl Fn(&Value) -> bool) -> Value {
    wait_for(&format!("an audit line in {}", path.display()), || {
        std::future::ready(lines(path).into_iter().find(|line| wanted(line)))
    })
    .await
}

fn audit_table(file: &Path, extra: &str) -> String {
    format!("[audit]\nfile = \"{}\"\n{extra}\n", file.display())
}

#[tokio::test]
async fn audit_lines_are_json_with_every_field_and_no_arguments_by_default() {
    let dir = tempfile::tempdir().unwrap();
    for arguments in [false, true] {
        let file = dir.path().join(format!("audit-{arguments}.log"));
        let extra = if arguments { "arguments = true" } else { "" };
        let berth = Berth::start(&admin_config("", &audit_table(&file, extra))).await;
        let session = RawSession::open(&berth.mcp_url("fx"), json!({})).await;
        assert_eq!(session.tool("echo", json!({"text": "secret-argument"})).await, "secret-argument");
        let refused = http().post(berth.mcp_url("fx")).header("authorization", basic("mallory", "x")).send().await;
        assert_eq!(refused.unwrap().status(), 401);
        http()
            .get(berth.admin_url("/api/backends"))
            .header("authorization", crate::harness::alice())
            .send()
            .await
            .unwrap();

        let call = line_where(&file, |l| l["method"] == "tools/call").await;
        for field in FIELDS {
            assert!(call.get(field).is_some(), "{field} missing from {call}");
        }
        assert_eq!(call["event"], "mcp_request", "{call}");
        assert_eq!(call["user"], USER, "{call}");
        assert_eq!(call["client_addr"], "127.0.0.1", "{call}");
        assert_eq!(call["backend"], "fx", "{call}");
        assert_eq!(call["session"], session.id.as_str(), "{call}");
        assert_eq!(call["name"], "echo", "{call}");
        assert_eq!(call["outcome"], "ok", "{call}");
        assert_eq!(call["status"], 200, "{call}");
        assert!(call["request_bytes"].as_u64().unwrap() > 0 && call["response_bytes"].as_u64().unwrap() > 0, "{call}");
        assert!(call["duration_ms"].is_u64() && call["ts"].as_str().unwrap().ends_with('Z'), "{call}");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "audit lines name users: the file is the owner's only");
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.contains("secret-argument"), arguments, "arguments = {arguments}:\n{text}");
        if arguments {
            assert_eq!(call["arguments"], json!({"text": "secret-argument"}), "{call}");
        }
        let initialize = line_where(&file, |l| l["method"] == "initialize").await;
        assert_eq!(initialize["session"], session.id.as_str(), "the session an initialize opened: {initialize}");
        let login = line_where(&file, |l| l["event"] == "login_refused").await;
        assert_eq!(
            (&login["user"], &login["status"], &login["outcome"]),
            (&json!("mallory"), &json!(401), &json!("refused"))
        );
        assert_eq!(login["name"], "/fx/mcp", "{login}");
        let admin = line_where(&file, |l| l["event"] == "admin_request").await;
        assert_eq!((&admin["user"], &admin["name"]), (&json!(USER), &json!("/api/backends")), "{admin}");
        berth.stop().await;
    }
}

#[tokio::test]
async fn audit_file_is_reopened_on_sigusr1_after_a_rename() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let port = free_port();
    let text = admin_config("", &audit_table(&file, "")).replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, format!("[server]\nlisten = \"127.0.0.1:0\"\n{text}")).unwrap();
    let mut command: Command = berth_command();
    command.args(["serve", "--config"]).arg(&config);
    let served = Served::spawn(command, dir.path().join("berth.log")).await;
    let url = format!("http://{}/fx/mcp", served.addr);
    let session = RawSession::open(&url, json!({})).await;
    session.tool("echo", json!({"text": "before"})).await;
    line_where(&file, |l| l["method"] == "tools/call").await;
    // logrotate moves the file, then signals.
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&file, &rotated).unwrap();
    let pid = nix::unistd::Pid::from_raw(served.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
    let log = dir.path().join("berth.log");
    wait_until("berth logs the reopen", || std::fs::read_to_string(&log).unwrap_or_default().contains("SIGUSR1")).await;
    session.tool("echo", json!({"text": "after"})).await;
    line_where(&file, |l| l["method"] == "tools/call").await;
    let old = lines(&rotated);
    assert_eq!(old.iter().filter(|l| l["method"] == "tools/call").count(), 1, "{old:?}");
    assert!(served.child.id().is_some(), "berth still runs after SIGUSR1");
    assert_eq!(http().get(format!("http://{}/", served.addr)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn audit_file_rotates_at_max_size_keeping_keep_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let berth = Berth::start(&admin_config("", &audit_table(&file, "max_size = \"2k\"\nkeep = 2"))).await;
    let session = RawSession::open(&berth.mcp_url("fx"), json!({})).await;
    let numbered = |n: u32| dir.path().join(format!("audit.log.{n}"));
    for round in 0..60 {
        session.tool("echo", json!({"text": format!("round {round}")})).await;
    }
    wait_until("two rotations", || numbered(2).exists()).await;
    wait_until("lines written after the last rotation", || file.exists()).await;
    assert!(!numbered(3).exists(), "keep = 2 keeps two rotated files");
    for path in [file.clone(), numbered(1), numbered(2)] {
        let size = std::fs::metadata(&path).unwrap().len();
        // A file is rotated before a batch would take it beyond max_size.
        assert!(size <= 2048, "{} has {size} bytes", path.display());
        assert!(!lines(&path).is_empty(), "{} has whole JSON lines", path.display());
    }
}

#[tokio::test]
async fn audit_log_that_cannot_be_written_never_stops_berth() {
    let dir = tempfile::tempdir().unwrap();
    // /dev/full fails every write (ENOSPC); a file in a missing directory fails every open.
    let missing = dir.path().join("no/such/dir/audit.log");
    for file in [Path::new("/dev/full"), missing.as_path()] {
        let berth = Berth::start(&admin_config("", &audit_table(file, ""))).await;
        let session = RawSession::open(&berth.mcp_url("fx"), json!({})).await;
        for n in 0..5 {
            assert_eq!(session.tool("echo", json!({"text": format!("{n}")})).await, format!("{n}"));
        }
        let dropped = wait_for("audit drops are counted", || async {
            let text = scrape(&berth).await;
            value(&text, "berth_audit_dropped_total").filter(|dropped| *dropped >= 7.0)
        })
        .await;
        assert!(dropped >= 7.0, "{}: {dropped}", file.display());
        assert_eq!(session.tool("echo", json!({"text": "still serving"})).await, "still serving");
        berth.stop().await;
    }
}
