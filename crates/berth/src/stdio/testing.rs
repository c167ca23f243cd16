//! What the unit tests of the stdio modules share: a spec, a relay whose "server" is a channel,
//! an instance that is never started, and messages from text.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    instance::Instance,
    launch::Launcher,
    relay::{Audience, LinkState, Relay, RelaySpec},
};
use crate::{
    config::{LaunchSpec, ProcessSpec, Sharing, StartMode, StdioSpec},
    jsonrpc::Message,
};

/// The timeouts of the test spec.
pub(crate) const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A stdio spec whose process is never started.
pub(crate) fn spec() -> Arc<StdioSpec> {
    Arc::new(StdioSpec {
        launch: LaunchSpec::Process(ProcessSpec {
            command: "true".into(),
            args: vec![],
            cwd: None,
            inherit_env: false,
        }),
        env: vec![],
        secret_env: vec![],
        sharing: Sharing::Shared,
        start: StartMode::Lazy,
        request_timeout: TIMEOUT,
        startup_timeout: TIMEOUT,
        idle_timeout: TIMEOUT,
        max_instances: 8,
        max_message_bytes: 1 << 20,
        stop_grace: TIMEOUT,
        resume_window: TIMEOUT,
        replay_events: 256,
        replay_bytes: 1 << 20,
        roots_result: r#"{"roots":[]}"#.to_string(),
    })
}

/// A message from text (which must be valid).
pub(crate) fn message(text: &str) -> Message {
    Message::parse(Bytes::copy_from_slice(text.as_bytes())).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A relay that is ready, whose server's stdin is the returned receiver (keep the sender).
pub(crate) fn ready_relay(audience: Audience) -> (Arc<Relay>, mpsc::Receiver<Bytes>, mpsc::Sender<Bytes>) {
    ready_relay_with_roots(audience, None)
}

/// [`ready_relay`], answering the server's `roots/list` itself with `roots` when given.
pub(crate) fn ready_relay_with_roots(
    audience: Audience,
    roots: Option<&str>,
) -> (Arc<Relay>, mpsc::Receiver<Bytes>, mpsc::Sender<Bytes>) {
    let relay = Relay::new(
        RelaySpec {
            backend: "fx".into(),
            request_timeout: TIMEOUT,
            startup_timeout: TIMEOUT,
            on_tools_changed: None,
            stats: Default::default(),
            roots: roots.map(Arc::from),
        },
        audience,
    );
    let (writer, stdin) = mpsc::channel(1 << 16);
    relay.set_link(LinkState::Ready(writer.clone()));
    (relay, stdin, writer)
}

/// An instance around `relay` that is never started.
pub(crate) fn instance(relay: &Arc<Relay>) -> Arc<Instance> {
    let spec = spec();
    let launcher = Arc::new(Launcher::new("fx", Arc::clone(&spec), None));
    Instance::new(Arc::clone(relay), launcher, spec, Some("{}".into()), &CancellationToken::new(), None)
}
