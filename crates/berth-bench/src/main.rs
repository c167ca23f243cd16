//! `berth-bench`: measures berth against its baselines, side by side in one invocation, and
//! prints a Markdown table (see `docs/performance.md` for the method and the results).
//!
//! Usage: `cargo run --release -p berth-bench [-- --quick] [--json FILE] [--no-docker]`.

mod child;
mod cpu;
mod http;
mod load;
mod peers;
mod pipe;
mod report;
mod roles;
mod scenarios;
mod stats;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "berth-bench", about = "Load generator for berth: every scenario side by side with its baseline")]
struct Args {
    /// Small counts and short rounds: the whole run takes well under a minute.
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Skip the Docker scenario even when an engine answers.
    #[arg(long)]
    no_docker: bool,
    /// Seconds of one measured round per side (default 3, quick 0.4).
    #[arg(long)]
    round_secs: Option<f64>,
    /// Measured rounds per side (default 3, quick 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Session counts of the many-sessions scenario (default 1000,10000; quick 100,1000).
    #[arg(long, value_delimiter = ',')]
    sessions: Option<Vec<usize>>,
    /// Requests in flight of the comparisons (default 1,8).
    #[arg(long, value_delimiter = ',')]
    inflight: Option<Vec<usize>>,
    /// Run only these scenarios (stdio, native, sessions, docker, peers; and observe, the cost
    /// of metrics and audit, which only runs when named); default all but observe.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// The workspace's tools/ directory (node and server-everything).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools"))]
    tools: PathBuf,
}

/// Raises the soft limit on open files to the hard limit: thousands of sessions and their
/// connections, here and in the berth child that inherits it.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn main() -> ExitCode {
    if let Some(code) = roles::run_role() {
        return code;
    }
    let args = Args::parse();
    raise_nofile();
    let quick = args.quick;
    let plan = scenarios::Plan {
        warmup: Duration::from_millis(if quick { 200 } else { 1000 }),
        round: Duration::from_secs_f64(args.round_secs.unwrap_or(if quick { 0.4 } else { 3.0 })),
        rounds: args.rounds.unwrap_or(if quick { 1 } else { 3 }),
        inflight: args.inflight.unwrap_or_else(|| vec![1, 8]),
        sessions: args.sessions.unwrap_or_else(|| if quick { vec![100, 1000] } else { vec![1000, 10_000] }),
        calls_per_session: if quick { 1 } else { 3 },
        session_connections: 32,
        docker: !args.no_docker,
        tools: args.tools,
        only: args.only,
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let report = runtime.block_on(scenarios::run(&plan));
    let header = format!(
        "berth-bench {}: {} cores, rounds of {:.1} s × {} per side, {}",
        if quick { "--quick" } else { "full run" },
        std::thread::available_parallelism().map_or(0, usize::from),
        plan.round.as_secs_f64(),
        plan.rounds,
        "closed loop, HTTP/1.1 keep-alive, Basic auth",
    );
    println!("{}", report::markdown(&report, &header));
    if let Some(path) = args.json
        && let Err(error) = std::fs::write(&path, report::json(&report).to_string())
    {
        eprintln!("berth-bench: cannot write {}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
