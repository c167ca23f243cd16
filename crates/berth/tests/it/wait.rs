//! Waiting for something that happens in the background: a process that stops, a container
//! that goes, a port that opens, a log line that appears.
//!
//! Every wait polls, and every bound is a hang guard, never a timing assertion: reaching it
//! means that the thing did not happen, not that it was slow.

use std::{future::Future, net::SocketAddr, time::Duration};

/// The bound of a wait that names no other: a minute.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(60);

/// How long a poll sleeps between two probes.
const INTERVAL: Duration = Duration::from_millis(100);

/// Probes every 100 ms until `probe` answers `Ok`, for at most `within`: that answer, or the
/// last `Err` once the bound is reached. For waits that report rather than panic (the drill
/// records what it saw), or that panic with what they saw last.
pub(crate) async fn poll<T, E, F>(within: Duration, mut probe: impl FnMut() -> F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let outcome = probe().await;
        if outcome.is_ok() || tokio::time::Instant::now() >= deadline {
            return outcome;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Waits until `probe` answers `Some`, and answers its value; panics after a minute.
pub(crate) async fn wait_for<T, F: Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    poll(HANG_GUARD, || {
        let probed = probe();
        async move { probed.await.ok_or(()) }
    })
    .await
    .unwrap_or_else(|()| panic!("timed out waiting until {what}"))
}

/// Waits until `condition` holds; panics after a minute.
pub(crate) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(what, || std::future::ready(condition().then_some(()))).await;
}

/// Waits until an asynchronous `condition` holds; panics after a minute.
pub(crate) async fn wait_until_async<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    wait_for(what, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await;
}

/// Waits until something accepts connections on `addr` (a subprocess that binds a port of its
/// own); panics, naming `what`, after 30 s.
pub(crate) async fn wait_listening(addr: SocketAddr, what: &str) {
    let connected = poll(Duration::from_secs(30), || tokio::net::TcpStream::connect(addr)).await;
    assert!(connected.is_ok(), "{what} never listened on {addr}");
}
