//! `berth-bench --quick` runs and its numbers are sane. Never a timing assertion: the machine
//! may be busy; only that every scenario ran, served every call, and measured something.

use std::process::Command;

use serde_json::Value;

#[test]
fn quick_run_reports_every_scenario_with_sane_numbers() {
    let json = std::env::temp_dir().join(format!("berth-bench-quick-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_berth-bench"))
        .arg("--quick")
        .arg("--json")
        .arg(&json)
        .output()
        .expect("berth-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "berth-bench --quick failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("| scenario |"), "no Markdown table:\n{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report")).unwrap();
    let _ = std::fs::remove_file(&json);

    let sane = |what: &str, run: &Value| {
        let number = |key: &str| run[key].as_f64().unwrap_or_else(|| panic!("{what}: no {key} in {run}"));
        assert!(number("per_sec") > 0.0, "{what}: no calls served: {run}");
        assert!(number("calls") > 0.0, "{what}: {run}");
        assert_eq!(number("errors"), 0.0, "{what}: failed calls: {run}");
        assert!(number("p50_ms") > 0.0 && number("p50_ms") <= number("p90_ms"), "{what}: {run}");
        assert!(number("p90_ms") <= number("p99_ms"), "{what}: {run}");
    };
    let comparisons = report["comparisons"].as_array().unwrap();
    // The stdio path with both servers, and the native path, each at 1 and 8 in flight.
    for (scenario, server) in [("stdio", "berth-conformance"), ("stdio", "server-everything"), ("native", "")] {
        for inflight in [1, 8] {
            let found = comparisons
                .iter()
                .find(|c| {
                    c["scenario"] == scenario
                        && c["server"].as_str().unwrap().contains(server)
                        && c["inflight"] == inflight
                })
                .unwrap_or_else(|| panic!("no {scenario} {server} at {inflight} in flight:\n{stdout}\n{stderr}"));
            sane(&format!("{scenario} {server} baseline"), &found["baseline"]);
            sane(&format!("{scenario} {server} berth"), &found["subject"]);
            // The CPU meter saw each process work: berth, the load generator, and (stdio) the
            // server on both sides.
            let cpu =
                |side: &str, key: &str| found[side][key].as_f64().unwrap_or_else(|| panic!("no {side}.{key}: {found}"));
            assert!(cpu("subject", "gateway_cpu_us") > 0.0 && cpu("subject", "client_cpu_us") > 0.0, "{found}");
            if scenario == "stdio" {
                assert!(cpu("baseline", "server_cpu_us") > 0.0 && cpu("subject", "server_cpu_us") > 0.0, "{found}");
            }
            assert!(found["subject_peak_kib"].as_u64().unwrap() > 0, "no RSS read: {found}");
        }
    }
    let sessions = report["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "both session counts ran:\n{stdout}\n{stderr}");
    for run in sessions {
        sane("sessions", &run["calls"]);
        assert!(
            run["calls"]["calls"].as_u64().unwrap() >= run["count"].as_u64().unwrap(),
            "every session called: {run}"
        );
        assert!(run["kib_per_session"].as_f64().unwrap() >= 0.0);
    }
    // The Docker scenario runs when an engine answers; otherwise it says why it was skipped.
    let skipped = report["skipped"].as_array().unwrap();
    let docker_ran = comparisons.iter().any(|c| c["scenario"] == "docker");
    assert!(docker_ran || skipped.iter().any(|s| s["scenario"] == "docker"), "docker neither ran nor was skipped");
    for c in comparisons.iter().filter(|c| c["scenario"] == "docker") {
        sane("docker baseline", &c["baseline"]);
        sane("docker berth", &c["subject"]);
    }
    // Peers run when installed (scripts/install-peers.sh, which scripts/test runs); a peer that
    // is installed and fails is a failure of the bench.
    for c in comparisons.iter().filter(|c| c["scenario"] == "peers") {
        sane(&format!("peer {}", c["baseline_name"]), &c["baseline"]);
        sane("berth against a peer", &c["subject"]);
    }
    for s in skipped.iter().filter(|s| s["scenario"] == "peers") {
        assert!(s["reason"].as_str().unwrap().contains("not installed"), "a peer failed: {s}");
    }
    // Nothing else may be skipped: a failure of another scenario is a failure of the bench.
    for s in skipped {
        assert!(["docker", "peers"].contains(&s["scenario"].as_str().unwrap()), "a scenario failed: {s}");
    }
}
