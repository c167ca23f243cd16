//! berth's integration tests: one binary, real HTTP over loopback, real MCP clients.

mod checklist;
mod cli;
mod conformance;
mod deploy;
mod docker;
mod drill;
mod everything;
mod examples;
mod forwarder;
mod harness;
mod hostile;
mod limits;
mod mcp_client;
mod params;
mod proxy;
mod raw;
mod shutdown;
mod statuses;
mod stdio;
mod streams;
mod tls;
