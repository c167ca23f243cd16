//! berth: a Streamable-HTTP MCP gateway.
//!
//! One process, one port: `/<name>/mcp` is the MCP endpoint of backend `<name>`, behind HTTP
//! Basic authentication and the transport rules of the Streamable-HTTP specification; the same
//! backend's tools are REST operations at `/<name>/openapi.json` and `/<name>/tools/<tool>`. See
//! `ARCHITECTURE.md` for the map of modules and the path of a request.

mod access;
mod admin;
mod allow_ips;
mod audit;
mod auth;
mod backend;
mod body;
pub mod cli;
mod config;
mod extensions;
mod forwarded;
mod gateway;
mod host;
mod host_field;
mod ip_block;
mod jsonrpc;
mod mcp_headers;
mod mcp_params;
mod metrics;
mod native;
mod observe;
mod own_session;
mod preflight;
mod public;
mod rate_limit;
mod recent;
mod remote;
mod reply;
mod rest;
mod route;
mod secret;
mod server;
mod sse_event;
mod stack;
mod stdio;
mod streamable;
mod tls;
mod visibility;

pub use config::{Config, ConfigError};
pub use gateway::Gateway;
pub use native::NativeRegistry;
pub use secret::Secret;
pub use server::signal;
