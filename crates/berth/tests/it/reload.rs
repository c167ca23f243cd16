//! SIGHUP reloads users, groups and tokens in a running berth (the real binary): a user added
//! to the file logs in, a removed one no longer does, a new token works, a group change moves a
//! user in or out of an `allow` list; a broken file changes nothing, and berth keeps serving.

use std::path::Path;

use reqwest::StatusCode;
use tokio::process::Command;

use crate::{
    harness::{PASSWORD, USER, alice, basic},
    process::{Served, berth_command},
    requests::initialize_status_as,
    wait::wait_until,
};

/// Alice's entry: she is in `dev`.
fn alice_entry() -> String {
    format!("[[auth.users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\ngroups = [\"dev\"]\n\n")
}

/// `users`, then `conformance`, which admits `dev` only, and `open`, which admits everybody.
fn config(users: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n{users}\n\
         [backends.conformance]\nkind = \"native\"\nallow = [\"group:dev\"]\n\n\
         [backends.open]\nkind = \"native\"\nservice = \"conformance\"\n"
    )
}

/// The status of an `initialize` at `route` with `authorization`.
async fn status(addr: &str, route: &str, authorization: &str) -> StatusCode {
    initialize_status_as(&format!("http://{addr}/{route}/mcp"), authorization, None).await
}

/// Writes `text` to `file`, sends SIGHUP, and waits for the `n`th SIGHUP line in the log.
async fn rewrite_and_reload(served: &Served, file: &Path, text: &str, n: usize) {
    std::fs::write(file, text).unwrap();
    let pid = nix::unistd::Pid::from_raw(served.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_until("berth logs the reload", || {
        std::fs::read_to_string(&served.log).unwrap_or_default().matches("SIGHUP:").count() >= n
    })
    .await;
}

#[tokio::test]
async fn sighup_reloads_users_groups_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, config(&alice_entry())).unwrap();
    let mut command: Command = berth_command();
    command.args(["serve", "--config"]).arg(&file);
    let served = Served::spawn(command, dir.path().join("berth.log")).await;
    let addr = served.addr.to_string();
    let bob = basic("bob", "bob-pw");
    assert_eq!(status(&addr, "open", &alice()).await, StatusCode::OK);
    assert_eq!(status(&addr, "open", &bob).await, StatusCode::UNAUTHORIZED);

    // Bob and a token arrive; Bob is not in dev yet.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["token", "create", "--name", "ci", "--groups", "dev"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (token, entry) = stdout.split_once("\n\n").unwrap();
    let bearer = format!("Bearer {token}");
    let bob_and_token = format!("[[auth.users]]\nname = \"bob\"\npassword = \"bob-pw\"\n\n{entry}");
    let with_bob = format!("{}{bob_and_token}", alice_entry());
    rewrite_and_reload(&served, &file, &config(&with_bob), 1).await;
    assert_eq!(status(&addr, "open", &bob).await, StatusCode::OK, "bob was added");
    assert_eq!(status(&addr, "conformance", &bob).await, StatusCode::FORBIDDEN, "bob is not in dev");
    assert_eq!(status(&addr, "conformance", &bearer).await, StatusCode::OK, "the token is in dev");

    // Bob joins dev through [auth.groups]; Alice leaves.
    let moved = format!("[auth.groups]\ndev = [\"bob\"]\n\n{with_bob}").replace(
        &format!("name = \"{USER}\"\npassword = \"{PASSWORD}\"\ngroups = [\"dev\"]"),
        "name = \"zed\"\npassword = \"z\"",
    );
    rewrite_and_reload(&served, &file, &config(&moved), 2).await;
    assert_eq!(status(&addr, "conformance", &bob).await, StatusCode::OK, "bob joined dev");
    assert_eq!(status(&addr, "open", &alice()).await, StatusCode::UNAUTHORIZED, "alice was removed");

    // A broken file (a group nobody is in) changes nothing.
    let broken = config(&moved).replace("allow = [\"group:dev\"]", "allow = [\"group:nobody\"]");
    rewrite_and_reload(&served, &file, &broken, 3).await;
    let log = std::fs::read_to_string(&served.log).unwrap();
    assert!(log.contains("SIGHUP: kept the configuration in use") && log.contains("no group `nobody`"), "{log}");
    assert_eq!(status(&addr, "conformance", &bob).await, StatusCode::OK, "the previous credentials stay");
    assert_eq!(status(&addr, "conformance", &bearer).await, StatusCode::OK);
    assert!(served.child.id().is_some(), "berth still runs");
}
