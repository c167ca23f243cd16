//! Splitting an SSE body into events and reading the JSON-RPC message of one: shared by the
//! layers that watch answers on their way out (`mcp_params.rs`, `visibility/filtered.rs`).

use serde_json::Value;

/// The end of the first SSE event in `buffer`, searching from `from`: where its text ends and
/// where the next event begins.
pub(crate) fn event_end(buffer: &[u8], from: usize) -> Option<(usize, usize)> {
    (from..buffer.len()).find_map(|at| {
        let rest = &buffer[at..];
        if rest.starts_with(b"\n\n") {
            Some((at, at + 2))
        } else if rest.starts_with(b"\r\n\r\n") {
            Some((at, at + 4))
        } else {
            None
        }
    })
}

/// The message of one SSE event: its `data` lines, joined.
pub(crate) fn event_message(event: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(event).ok()?;
    let data: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data))
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}
