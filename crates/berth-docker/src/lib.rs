//! The only crate of berth that knows about Docker.
//!
//! It creates a container for one instance of a stdio MCP server, attaches to its standard
//! streams before starting it, hands back a byte-stream pair, and stops and removes the container
//! again. It also keeps an [`Engine`]'s health up to date and removes the containers that a
//! previous run of the same berth left behind.
//!
//! Framing, routing and timeouts of the messages on those streams are not done here: they belong
//! to berth's stdio relay.

mod container;
mod engine;
mod error;
mod probe;

pub use container::{Attached, Container, ContainerSpec, ContainerTemplate};
pub use engine::Engine;
pub use error::DockerError;
