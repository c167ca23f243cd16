//! Who may use which backend, over real HTTP: groups from `[[auth.users]] groups` and from
//! `[auth.groups]`, `user:` entries, a backend without `allow` open to all; refusals are 403 with
//! a JSON-RPC error carrying the request's id, on native, process and (with Docker) container
//! backends, and on the stateless generation too; configuration mistakes name their line.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    harness::{Berth, PASSWORD, USER, basic, config_with, docker_ready, fixture_config, http, shared_and_per_session},
    requests::{ACCEPT_BOTH, McpHeaders, initialize, stateless_call},
};

/// Alice is in `dev` through her own entry, Bob through `[auth.groups]`, Carol in none.
const USERS: &str = "[auth.groups]\ndev = [\"bob\"]\n\n\
    [[auth.users]]\nname = \"bob\"\npassword = \"bob-pw\"\n\n\
    [[auth.users]]\nname = \"carol\"\npassword = \"carol-pw\"\n\n";

/// `dev` may use `guarded` routes, Carol only `mine`.
fn with_allow(config: String, guarded: &[&str], mine: &[&str]) -> String {
    let mut config = config.replace(
        &format!("[[auth.users]]\nname = \"{USER}\"\n"),
        &format!("[[auth.users]]\nname = \"{USER}\"\ngroups = [\"dev\"]\n"),
    );
    for route in guarded {
        config =
            config.replace(&format!("[backends.{route}]\n"), &format!("[backends.{route}]\nallow = [\"group:dev\"]\n"));
    }
    for route in mine {
        config = config
            .replace(&format!("[backends.{route}]\n"), &format!("[backends.{route}]\nallow = [\"user:carol\"]\n"));
    }
    format!("{USERS}{config}")
}

/// The status and JSON body of `body` POSTed to `url` as `user`, with `version`'s headers.
async fn post_as(url: &str, user: (&str, &str), body: Value, stateless: bool) -> (StatusCode, Value) {
    let mut request = http()
        .post(url)
        .header("authorization", basic(user.0, user.1))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json");
    if stateless {
        request = request.stateless_call("echo");
    }
    let response = request.body(body.to_string()).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    // A JSON answer, or the first `data:` line of an SSE one.
    let json = serde_json::from_str(&text)
        .ok()
        .or_else(|| text.lines().find_map(|line| serde_json::from_str(line.strip_prefix("data:")?.trim()).ok()));
    (status, json.unwrap_or(Value::Null))
}

const ALICE: (&str, &str) = (USER, PASSWORD);
const BOB: (&str, &str) = ("bob", "bob-pw");
const CAROL: (&str, &str) = ("carol", "carol-pw");

/// The refusal berth must give: 403, JSON-RPC, the request's id, `forbidden_backend`.
fn assert_forbidden(route: &str, who: &str, (status, body): &(StatusCode, Value), id: Value) {
    assert_eq!(*status, StatusCode::FORBIDDEN, "{who} on {route}: {body}");
    assert_eq!(body["jsonrpc"], "2.0", "{who} on {route}: {body}");
    assert_eq!(body["id"], id, "{who} on {route}: {body}");
    assert_eq!(body["error"]["data"]["error"], "forbidden_backend", "{who} on {route}: {body}");
}

/// Checks every point of the module doc on `berth`, whose `guarded` routes admit `dev`, whose
/// `mine` routes admit Carol, and whose `open` route has no list.
async fn check(berth: &Berth, guarded: &[&str], mine: &[&str], open: &str) {
    let init = || initialize("2025-11-25");
    for route in guarded {
        let url = berth.mcp_url(route);
        for (who, user) in [("alice", ALICE), ("bob", BOB)] {
            let (status, body) = post_as(&url, user, init(), false).await;
            assert_eq!(status, StatusCode::OK, "{who} is in dev, {route} allows dev: {body}");
        }
        assert_forbidden(route, "carol", &post_as(&url, CAROL, init(), false).await, json!(1));
        // The stateless generation, and requests without an id (a GET stream, a DELETE).
        let call = stateless_call(9, "echo", json!({"message": "hi"}));
        assert_forbidden(route, "carol (stateless)", &post_as(&url, CAROL, call, true).await, json!(9));
        let get = http()
            .get(&url)
            .header("authorization", basic(CAROL.0, CAROL.1))
            .header("accept", "text/event-stream")
            .session("any")
            .protocol("2025-11-25");
        let delete = http().delete(&url).header("authorization", basic(CAROL.0, CAROL.1)).session("any");
        for request in [get, delete] {
            let response = request.send().await.unwrap();
            let answer = (response.status(), response.json::<Value>().await.unwrap_or(Value::Null));
            assert_forbidden(route, "carol (GET/DELETE)", &answer, Value::Null);
        }
    }
    for route in mine {
        let url = berth.mcp_url(route);
        let (status, body) = post_as(&url, CAROL, init(), false).await;
        assert_eq!(status, StatusCode::OK, "carol on {route}: {body}");
        assert_forbidden(route, "alice", &post_as(&url, ALICE, init(), false).await, json!(1));
    }
    let (status, body) = post_as(&berth.mcp_url(open), CAROL, init(), false).await;
    assert_eq!(status, StatusCode::OK, "{open} has no allow list: {body}");
}

/// A second native backend without an allow list.
const OPEN: &str = "[backends.open]\nkind = \"native\"\nservice = \"conformance\"\n\n";

#[tokio::test]
async fn backends_admit_only_their_allowed_users_and_groups() {
    let config = with_allow(format!("{OPEN}{}", fixture_config("")), &["conformance", "fx"], &["fx-solo"]);
    let berth = Berth::start(&config).await;
    check(&berth, &["conformance", "fx"], &["fx-solo"], "open").await;
    berth.stop().await;
}

#[tokio::test]
async fn container_backends_admit_only_their_allowed_users_and_groups() {
    if !docker_ready(&["fixture"]) {
        return;
    }
    let backends = shared_and_per_session(["fxd", "fxd-solo"], "kind = \"docker\"\nimage = \"berth-test/fixture:dev\"");
    let config = with_allow(format!("{OPEN}{}", config_with(&backends)), &["fxd"], &["fxd-solo"]);
    let berth = Berth::start(&config).await;
    check(&berth, &["fxd"], &["fxd-solo"], "open").await;
    berth.stop().await;
}
