//! berth's integration tests: one binary, real HTTP over loopback, real MCP clients.
//!
//! The helpers every module shares live beside `harness.rs` (an in-process berth, its
//! configurations and credentials), one job each: `requests.rs` builds what an MCP client
//! sends, `sse.rs` reads what comes back, `raw.rs` is a session on top of both, `process.rs`
//! runs the real binary and counts processes, and `wait.rs` waits for what happens in the
//! background.

mod access;
mod admin;
mod allow_ips;
mod audit;
mod checklist;
mod cli;
mod conformance;
mod corpus;
mod deploy;
mod docker;
mod drill;
mod everything;
mod examples;
mod forwarder;
mod harness;
mod hostile;
mod limits;
mod live_reload;
mod mcp_client;
mod monitoring;
mod owners;
mod page;
mod params;
mod process;
mod protect;
mod proxy;
mod rate_limit;
mod raw;
mod readme;
mod reload;
mod remote;
mod requests;
mod rest;
mod shutdown;
mod sse;
mod statuses;
mod stdio;
mod streams;
mod tasks;
mod tls;
mod tokens;
mod visibility;
mod wait;
