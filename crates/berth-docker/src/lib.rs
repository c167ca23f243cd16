//! The only crate of berth that knows about Docker.
//!
//! It creates a container for one instance of a stdio MCP server, attaches to its standard
//! streams before starting it, hands back a byte-stream pair, and stops and removes the container
//! again. It also keeps an [`Engine`]'s health up to date and sweeps away the containers nobody
//! uses any more: every container carries its [`Owner`] (a deployment and a [`Run`] of it) in
//! its labels, and a [`Sweep`] removes only containers of its own deployment whose run is
//! provably dead, or that exited while no live run is known to use them.
//!
//! It also starts processes in containers that run already (`docker exec`), for backends that
//! share a long-lived container, and stops them, which the engine cannot do ([`Exec`]).
//!
//! Framing, routing and timeouts of the messages on those streams are not done here: they belong
//! to berth's stdio relay.

mod container;
mod engine;
mod error;
mod exec;
mod liveness;
mod own_container;
mod owner;
mod probe;
mod sweep;

pub use container::{Attached, Container, ContainerSpec, ContainerTemplate};
pub use engine::Engine;
pub use error::DockerError;
pub use exec::{AttachedExec, ContainerState, EXEC_MARKER, Exec, ExecSpec, ExecTemplate};
pub use own_container::OwnContainer;
pub use owner::{Owner, ProcessMark, Run};
pub use sweep::Sweep;
