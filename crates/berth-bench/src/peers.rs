//! Scenario 5: peer gateways (supergateway, mcp-proxy) in front of server-everything, installed
//! under `tools/peers` by `scripts/install-peers.sh` (never globally): the calls of scenario 1
//! through each peer and through berth, side by side in the same run. The ratio is berth's
//! calls/s over the peer's.

use std::{path::Path, time::Duration};

use anyhow::Context as _;
use tokio::process::Command;

use crate::{
    child::{self, Server},
    cpu::{Probe, Servers},
    http::{Conn, Endpoint},
    load::{self, Until},
    scenarios::{self, Comparison, Plan, Report, Skipped, StdioServer},
};

/// A peer gateway: its name as reported, where it is installed, how to start it.
struct Peer {
    name: &'static str,
    kind: Kind,
    /// The entry point whose presence means "installed".
    installed: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Supergateway,
    McpProxy,
}

/// How a peer runs server-everything: node and the script.
struct Stdio {
    node: std::path::PathBuf,
    script: std::path::PathBuf,
}

impl Peer {
    /// The command serving server-everything on `addr` at `/mcp`.
    fn command(&self, addr: &std::net::SocketAddr, stdio: &Stdio) -> Command {
        let port = addr.port().to_string();
        match self.kind {
            Kind::Supergateway => {
                // Sessions as berth keeps them (`--stateful`): its stateless mode would start a
                // server per request.
                let mut command = Command::new(&stdio.node);
                command
                    .arg(&self.installed)
                    .arg("--stdio")
                    .arg(format!("{} {} stdio", stdio.node.display(), stdio.script.display()))
                    .args(["--outputTransport", "streamableHttp", "--stateful", "--logLevel", "none", "--port", &port]);
                command
            }
            Kind::McpProxy => {
                let mut command = Command::new(&self.installed);
                command
                    .args(["--host", "127.0.0.1", "--log-level", "WARNING", "--port", &port])
                    .arg(&stdio.node)
                    .arg(&stdio.script)
                    .arg("stdio");
                command
            }
        }
    }
}

fn peers(tools: &Path) -> Vec<Peer> {
    let peers = tools.join("peers");
    vec![
        Peer {
            name: "supergateway 4.0.0",
            kind: Kind::Supergateway,
            installed: peers.join("node_modules/supergateway/dist/index.js"),
        },
        Peer { name: "mcp-proxy 0.13.0", kind: Kind::McpProxy, installed: peers.join("venv/bin/mcp-proxy") },
    ]
}

/// Runs the peers that are installed against berth; reports the others as skipped.
pub(crate) async fn run(plan: &Plan, report: &mut Report) {
    let (installed, missing): (Vec<Peer>, Vec<Peer>) =
        peers(&plan.tools).into_iter().partition(|p| p.installed.exists());
    for peer in missing {
        let reason = format!("{} not installed ({}; scripts/install-peers.sh)", peer.name, peer.installed.display());
        report.skipped.push(Skipped { scenario: "peers", reason });
    }
    if installed.is_empty() {
        return;
    }
    if let Err(error) = compare(plan, &installed, report).await {
        eprintln!("berth-bench: peers failed: {error:#}");
        report.skipped.push(Skipped { scenario: "peers", reason: format!("{error:#}") });
    }
}

async fn compare(plan: &Plan, peers: &[Peer], report: &mut Report) -> anyhow::Result<()> {
    let server: StdioServer = scenarios::everything_process(&plan.tools)?;
    let (node, script) = scenarios::everything_paths(&plan.tools)?;
    let stdio = Stdio { node, script };
    let berth = scenarios::berth_for(&server.backend).await?;
    let berth_endpoint = scenarios::berth_endpoint(&berth, "stdio");
    let berth_sessions = [Conn::open(&berth_endpoint).await?.initialize(&berth_endpoint).await?];
    let berth_probe = Probe { gateway: Some(berth.pid()), server: Servers::DescendantsOf(berth.pid()) };
    for peer in peers {
        eprintln!("berth-bench: peers: {}", peer.name);
        let addr = child::free_port()?;
        let gateway: Server = child::peer(peer.command(&addr, &stdio), addr, "/mcp")
            .await
            .with_context(|| format!("start {}", peer.name))?;
        // The bench's client sends its Basic credentials to every side; peers ignore them.
        let endpoint = Endpoint::new(addr, "/mcp", Some((child::USER, child::PASSWORD)));
        let sessions = [Conn::open(&endpoint).await?.initialize(&endpoint).await?];
        let peer_probe = Probe { gateway: Some(gateway.pid()), server: Servers::DescendantsOf(gateway.pid()) };
        for &inflight in &plan.inflight {
            let (baseline, subject, paired) = scenarios::side_by_side(
                plan,
                async |limit| {
                    peer_probe
                        .measure(load::http(&endpoint, &sessions, inflight, &server.call, Until::Elapsed(limit)))
                        .await
                },
                async |limit| {
                    berth_probe
                        .measure(load::http(
                            &berth_endpoint,
                            &berth_sessions,
                            inflight,
                            &server.call,
                            Until::Elapsed(limit),
                        ))
                        .await
                },
            )
            .await?;
            report.comparisons.push(Comparison {
                scenario: "peers",
                server: server.name.to_string(),
                baseline_name: peer.name.to_string(),
                subject_name: "berth".into(),
                inflight,
                baseline,
                subject,
                subject_peak_kib: berth.memory().1,
                paired,
            });
        }
        gateway.stop(Duration::from_secs(5)).await;
    }
    berth.stop(Duration::from_secs(10)).await;
    Ok(())
}
