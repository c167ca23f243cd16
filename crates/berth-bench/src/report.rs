//! The report: Markdown tables for people, JSON for the test that checks the numbers are sane.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::{
    scenarios::{Comparison, Report},
    stats::Run,
};

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The subject's calls/s over its *gateway-free bound*, `cores / (client + server)` calls/s with
/// the client and server CPU per call measured on the subject side in the same round: the
/// throughput the machine would reach if the gateway cost nothing. 1.0 means the gateway is
/// free; what is missing is the gateway's CPU and any idle time of the cores. Meaningful only
/// when nothing else runs on the machine.
fn of_bound(c: &Comparison) -> Option<f64> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let (client, server) = (c.subject.client_us?, c.subject.server_us?);
    Some(c.subject.per_sec * (client + server) / (cores * 1e6))
}

fn micros(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |us| format!("{us:.0}"))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// The median of `values`, if any.
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn ratio(c: &Comparison) -> f64 {
    c.subject.per_sec / c.baseline.per_sec.max(1e-9)
}

/// The Markdown tables and the verdict on each target.
pub(crate) fn markdown(report: &Report, header: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}\n");
    let _ = writeln!(
        out,
        "| scenario | server | in flight | baseline | calls/s | p50 / p90 / p99 ms | subject | calls/s | p50 / p90 / p99 ms | ratio | added p50 ms | subject peak RSS MiB | errors |"
    );
    let _ = writeln!(out, "|---|---|--:|---|--:|---|---|--:|---|--:|--:|--:|--:|");
    for c in &report.comparisons {
        let (b, s) = (&c.baseline, &c.subject);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {:.2} / {:.2} / {:.2} | {} | {:.0} | {:.2} / {:.2} / {:.2} | {:.2}× | {:+.2} | {} | {} |",
            c.scenario,
            c.server,
            c.inflight,
            c.baseline_name,
            b.per_sec,
            b.p50,
            b.p90,
            b.p99,
            c.subject_name,
            s.per_sec,
            s.p50,
            s.p90,
            s.p99,
            ratio(c),
            s.p50 - b.p50,
            mib(c.subject_peak_kib),
            b.errors + s.errors,
        );
    }
    let metered: Vec<&Comparison> = report
        .comparisons
        .iter()
        .filter(|c| c.subject.gateway_us.is_some() || c.baseline.server_us.is_some())
        .collect();
    if !metered.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| CPU µs per call | server | in flight | baseline | client | gateway | server | subject | client | gateway | server | of gateway-free bound |"
        );
        let _ = writeln!(out, "|---|---|--:|---|--:|--:|--:|---|--:|--:|--:|--:|");
        for c in metered {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.scenario,
                c.server,
                c.inflight,
                c.baseline_name,
                micros(c.baseline.client_us),
                micros(c.baseline.gateway_us),
                micros(c.baseline.server_us),
                c.subject_name,
                micros(c.subject.client_us),
                micros(c.subject.gateway_us),
                micros(c.subject.server_us),
                of_bound(c).map_or_else(|| "—".to_owned(), |b| format!("{b:.2}")),
            );
        }
    }
    if !report.sessions.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| sessions (shared stdio, berth-conformance) | opened/s | RSS per idle session KiB | calls | calls/s | p50 / p90 / p99 ms | berth peak RSS MiB | errors |"
        );
        let _ = writeln!(out, "|--:|--:|--:|--:|--:|---|--:|--:|");
        for s in &report.sessions {
            let c = &s.calls;
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.1} | {} | {:.0} | {:.2} / {:.2} / {:.2} | {} | {} |",
                s.count,
                s.opened_per_sec,
                s.kib_per_session,
                c.calls,
                c.per_sec,
                c.p50,
                c.p90,
                c.p99,
                mib(s.peak_kib),
                c.errors
            );
        }
    }
    if !report.skipped.is_empty() {
        let _ = writeln!(out);
        for skipped in &report.skipped {
            let _ = writeln!(out, "- skipped `{}`: {}", skipped.scenario, skipped.reason.replace('\n', " "));
        }
    }
    let targets = targets(report);
    if !targets.is_empty() {
        let _ = writeln!(out, "\nTargets (issues 5, 8 and 10):\n");
        for (target, measured, ok) in targets {
            let _ = writeln!(out, "- {target}: {measured} — {}", verdict(ok));
        }
    }
    out
}

/// Each target of the issue that this run can judge: what, the measured value, whether met.
fn targets(report: &Report) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let find = |scenario: &'static str, inflight: usize| {
        report
            .comparisons
            .iter()
            .filter(move |c| c.scenario == scenario && c.inflight == inflight && c.subject_name == "berth")
    };
    // Issue 8 replaced issue 5's "≥ 0.6× direct pipe" for stdio with these two.
    for c in find("stdio", 8) {
        if let Some(us) = c.subject.gateway_us {
            out.push((
                format!("stdio {}: berth CPU ≤ 35 µs per call (8 in flight)", c.server),
                format!("{us:.0} µs"),
                us <= 35.0,
            ));
        }
        if let Some(share) = of_bound(c) {
            out.push((
                format!("stdio {}: calls/s ≥ 0.7 of the gateway-free bound (8 in flight)", c.server),
                format!("{share:.2}"),
                share >= 0.7,
            ));
        }
    }
    // Issue 10: observation (metrics + audit) costs ≤ 3 % of calls/s, judged on the median of
    // the paired rounds' ratios (the spread says how far one run can be trusted).
    for c in report.comparisons.iter().filter(|c| c.scenario == "observe") {
        if let Some(paired) = median(&c.paired) {
            let (low, high) = c.paired.iter().fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
            out.push((
                format!("metrics + audit cost ≤ 3 % of calls/s ({} in flight)", c.inflight),
                format!("{paired:.3}× (rounds {low:.2}–{high:.2}×)"),
                paired >= 0.97,
            ));
        }
    }
    for c in find("stdio", 1) {
        let added = c.subject.p50 - c.baseline.p50;
        out.push((
            format!("stdio {} p50 added latency ≤ 0.5 ms (1 in flight)", c.server),
            format!("{added:+.2} ms"),
            added <= 0.5,
        ));
    }
    for c in find("native", 8) {
        out.push(("native ≥ 0.9× bare rmcp (8 in flight)".into(), format!("{:.2}×", ratio(c)), ratio(c) >= 0.9));
    }
    for c in find("peers", 8) {
        let (floor, peer) =
            if c.baseline_name.starts_with("supergateway") { (5.0, "supergateway") } else { (7.0, "mcp-proxy") };
        out.push((
            format!("berth ≥ {floor}× {peer} (server-everything, 8 in flight)"),
            format!("{:.1}×", ratio(c)),
            ratio(c) >= floor,
        ));
    }
    for s in report.sessions.iter().filter(|s| s.count >= 10_000) {
        out.push((
            format!("{} idle sessions ≤ 50 KiB each", s.count),
            format!("{:.1} KiB", s.kib_per_session),
            s.kib_per_session <= 50.0,
        ));
        out.push((
            format!("{} sessions: calls p99 ≤ 10 ms", s.count),
            format!("{:.2} ms", s.calls.p99),
            s.calls.p99 <= 10.0,
        ));
    }
    out
}

fn run_json(run: &Run) -> Value {
    json!({"calls": run.calls, "errors": run.errors, "per_sec": run.per_sec, "p50_ms": run.p50, "p90_ms": run.p90, "p99_ms": run.p99,
        "client_cpu_us": run.client_us, "gateway_cpu_us": run.gateway_us, "server_cpu_us": run.server_us})
}

/// The report as JSON.
pub(crate) fn json(report: &Report) -> Value {
    json!({
        "comparisons": report.comparisons.iter().map(|c| json!({
            "scenario": c.scenario, "server": c.server, "inflight": c.inflight,
            "baseline_name": c.baseline_name, "subject_name": c.subject_name,
            "baseline": run_json(&c.baseline), "subject": run_json(&c.subject),
            "ratio": ratio(c), "paired_ratios": c.paired, "of_gateway_free_bound": of_bound(c), "subject_peak_kib": c.subject_peak_kib,
        })).collect::<Vec<_>>(),
        "sessions": report.sessions.iter().map(|s| json!({
            "count": s.count, "opened_per_sec": s.opened_per_sec, "kib_per_session": s.kib_per_session,
            "calls": run_json(&s.calls), "peak_kib": s.peak_kib,
        })).collect::<Vec<_>>(),
        "skipped": report.skipped.iter().map(|s| json!({"scenario": s.scenario, "reason": s.reason})).collect::<Vec<_>>(),
    })
}
