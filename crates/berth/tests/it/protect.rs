//! Failed-login throttling with berth's default `[auth.throttle]`, measured over real HTTP with
//! distinct loopback source addresses as distinct clients: one address guessing, 200 addresses
//! guessing one user's password, the real users during both, and what a throttled refusal is
//! counted and logged as.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    admin::{admin_config, scrape, value},
    harness::{Berth, PASSWORD, USER, basic, config_with},
    requests::{ACCEPT_BOTH, initialize},
};

/// The defaults the test measures against (README, `[auth.throttle]`).
const ADDRESS_BURST: u32 = 5;
const ADDRESS_INTERVAL: Duration = Duration::from_secs(30);
const USER_BURST: u32 = 20;
const USER_INTERVAL: Duration = Duration::from_millis(7500);

/// Alice, Bob and Carol, plain passwords, the native conformance backend.
fn users_config() -> String {
    config_with(
        "[[auth.users]]\nname = \"bob\"\npassword = \"bob-pw\"\n\n\
         [[auth.users]]\nname = \"carol\"\npassword = \"carol-pw\"\n",
    )
}

/// A client whose connections come from `local` (127.0.0.2 … are distinct clients to berth).
pub(crate) fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(local.parse::<IpAddr>().unwrap()).no_proxy().build().unwrap()
}

/// POSTs an `initialize` with `authorization`; answers the status and, for a refusal, the
/// `Retry-After` and the JSON body.
async fn login(client: &reqwest::Client, url: &str, authorization: &str) -> (StatusCode, Option<u64>, Value) {
    let response = client
        .post(url)
        .header("authorization", authorization)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(initialize("2025-06-18").to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    let body = if status.is_success() { Value::Null } else { response.json().await.unwrap_or(Value::Null) };
    (status, retry_after, body)
}

/// The most guesses GCRA may let through in `elapsed`: the burst, then one per interval.
fn allowed(burst: u32, interval: Duration, elapsed: Duration) -> u32 {
    burst + (elapsed.as_secs_f64() / interval.as_secs_f64()).ceil() as u32
}

/// A `429` of the throttle: `Retry-After` of at least a second, the JSON error.
fn assert_throttled(retry_after: Option<u64>, body: &Value) {
    assert!(retry_after.is_some_and(|s| s >= 1), "Retry-After: {retry_after:?}");
    assert_eq!(body["error"], "too_many_failed_logins", "{body}");
}

#[tokio::test]
async fn one_address_guessing_is_throttled_and_nobody_else_notices() {
    let berth = Berth::start(&users_config()).await;
    let url = berth.mcp_url("conformance");
    let alice_desk = client_from("127.0.0.250");
    assert_eq!(login(&alice_desk, &url, &basic(USER, PASSWORD)).await.0, StatusCode::OK);

    let attacker = client_from("127.0.0.2");
    let started = Instant::now();
    let (mut evaluated, mut throttled) = (0u32, 0u32);
    for guess in 0..200 {
        let (status, retry_after, body) = login(&attacker, &url, &basic(USER, &format!("guess-{guess}"))).await;
        match status {
            StatusCode::UNAUTHORIZED => evaluated += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                throttled += 1;
                assert_throttled(retry_after, &body);
            }
            other => panic!("guess {guess}: {other}"),
        }
        if guess % 20 == 0 {
            // The real users are untouched: Alice where she logged in, Bob from anywhere.
            assert_eq!(login(&alice_desk, &url, &basic(USER, PASSWORD)).await.0, StatusCode::OK);
            let bob = client_from("127.0.0.251");
            assert_eq!(login(&bob, &url, &basic("bob", "bob-pw")).await.0, StatusCode::OK);
        }
    }
    let elapsed = started.elapsed();
    println!("one address: {evaluated} of 200 guesses evaluated, {throttled} throttled, in {elapsed:?}");
    assert!(evaluated >= ADDRESS_BURST, "the first burst is evaluated: {evaluated}");
    assert!(evaluated <= allowed(ADDRESS_BURST, ADDRESS_INTERVAL, elapsed), "{evaluated} in {elapsed:?}");
    // The attacking address is refused even with the right password: nothing it sends is
    // evaluated until its bucket refills.
    let (status, retry_after, body) = login(&attacker, &url, &basic(USER, PASSWORD)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_throttled(retry_after, &body);
}

#[tokio::test]
async fn two_hundred_addresses_guessing_one_password_get_the_users_budget_in_all() {
    let berth = Berth::start(&users_config()).await;
    let url = berth.mcp_url("conformance");
    let alice_desk = client_from("127.0.0.250");
    assert_eq!(login(&alice_desk, &url, &basic(USER, PASSWORD)).await.0, StatusCode::OK);

    let started = Instant::now();
    let attackers: Vec<_> = (2..=201u8)
        .map(|last| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = client_from(&format!("127.0.0.{last}"));
                let mut statuses = Vec::new();
                for guess in 0..3 {
                    let (status, retry_after, body) =
                        login(&client, &url, &basic(USER, &format!("{last}-{guess}"))).await;
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        assert_throttled(retry_after, &body);
                    }
                    statuses.push(status);
                }
                statuses
            })
        })
        .collect();
    // During the attack: Alice at her desk, Carol (never seen before) from a new address.
    let carol = client_from("127.0.0.252");
    let mut real_logins = 0;
    while !attackers.iter().all(tokio::task::JoinHandle::is_finished) {
        assert_eq!(login(&alice_desk, &url, &basic(USER, PASSWORD)).await.0, StatusCode::OK);
        assert_eq!(login(&carol, &url, &basic("carol", "carol-pw")).await.0, StatusCode::OK);
        real_logins += 2;
    }
    let mut counts = std::collections::BTreeMap::<u16, u32>::new();
    for attacker in attackers {
        for status in attacker.await.unwrap() {
            *counts.entry(status.as_u16()).or_default() += 1;
        }
    }
    let elapsed = started.elapsed();
    let evaluated = counts.get(&401).copied().unwrap_or(0);
    println!("200 addresses: {counts:?} of 600 guesses in {elapsed:?}; {real_logins} real logins, all 200");
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), [401, 429], "{counts:?}");
    assert!(evaluated <= allowed(USER_BURST, USER_INTERVAL, elapsed), "{evaluated} in {elapsed:?}");
    assert!(real_logins >= 2);
    // Still refused for Alice from an address she never logged in from, and the budget is
    // per user: Bob is not affected.
    let (status, ..) = login(&client_from("127.0.0.253"), &url, &basic(USER, PASSWORD)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(login(&client_from("127.0.0.253"), &url, &basic("bob", "bob-pw")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn throttled_refusals_are_counted_shared_with_the_admin_port_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let berth = Berth::start(&admin_config("", &format!("[audit]\nfile = \"{}\"\n", audit.display()))).await;
    let url = berth.mcp_url("fx");
    let attacker = client_from("127.0.0.3");
    for guess in 0..ADDRESS_BURST {
        assert_eq!(login(&attacker, &url, &basic("bob", &format!("g{guess}"))).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login(&attacker, &url, &basic("bob", "g")).await.0, StatusCode::TOO_MANY_REQUESTS);
    // The admin listener shares the throttle: the address is refused there too.
    let admin =
        attacker.get(berth.admin_url("/metrics")).header("authorization", basic(USER, PASSWORD)).send().await.unwrap();
    assert_eq!(admin.status(), StatusCode::TOO_MANY_REQUESTS);
    let text = scrape(&berth).await;
    assert_eq!(value(&text, "berth_auth_failures_total{reason=\"throttled\"}"), Some(2.0), "{text}");
    assert_eq!(value(&text, "berth_auth_failures_total{reason=\"wrong\"}"), Some(f64::from(ADDRESS_BURST)), "{text}");
    let lines = crate::wait::wait_for("two throttled audit lines", || {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|l| l["event"] == "login_refused" && l["status"] == 429)
            .collect();
        std::future::ready((lines.len() == 2).then_some(lines))
    })
    .await;
    assert_eq!(lines[0]["client_addr"], "127.0.0.3");
    assert_eq!(lines[0]["user"], "bob");
    assert_eq!(lines[1]["listener"], "admin");
}
