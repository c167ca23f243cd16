//! Stdio backends: MCP servers that speak newline-delimited JSON-RPC on stdin/stdout, run as
//! local processes (`kind = "process"`) or Docker containers (`kind = "docker"`), served over
//! Streamable HTTP by berth. See `stdio/README.md` for the protocol subtleties.

mod deployment;
mod docker_hub;
mod endpoint;
mod error;
mod frame;
mod instance;
mod launch;
mod log_level;
mod log_limit;
mod outbox;
mod process;
mod relay;
mod session;
mod sse;
mod stderr_log;
mod tasks;
#[cfg(test)]
mod testing;

pub(crate) use deployment::Naming;
pub(crate) use docker_hub::DockerHub;
pub(crate) use endpoint::StdioBackend;
pub(crate) use launch::{Launched, Launcher, RunHandle};
pub(crate) use session::SessionInfo;
pub(crate) use stderr_log::{LogLine, StderrLog};
