//! The last lines a backend's servers wrote to stderr, for `GET /api/backends/{name}/logs`.
//!
//! A ring of [`KEPT_LINES`] lines per backend, shared by all its instances (and kept when an
//! admin or a reload restarts it, so that the lines before a crash can still be read). Lines
//! are cut at [`LONGEST_LINE`] bytes: a chatty or hostile server costs at most
//! `KEPT_LINES × LONGEST_LINE` of memory.

use std::{collections::VecDeque, sync::Mutex, time::SystemTime};

/// How many lines are kept per backend.
pub(crate) const KEPT_LINES: usize = 200;
/// Longest kept line, in bytes; the rest is cut (at a character boundary) and marked.
pub(crate) const LONGEST_LINE: usize = 4096;

/// One stderr line and when berth read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct LogLine {
    /// When it was read (RFC 3339 UTC).
    pub(crate) at: String,
    /// The line, lossily decoded as UTF-8, without its newline.
    pub(crate) line: String,
}

/// The ring.
#[derive(Debug, Default)]
pub(crate) struct StderrLog {
    lines: Mutex<VecDeque<LogLine>>,
}

impl StderrLog {
    /// Keeps `line`, forgetting the oldest when full.
    pub(crate) fn push(&self, line: &[u8]) {
        let mut text = String::from_utf8_lossy(&line[..line.len().min(LONGEST_LINE)]).into_owned();
        if line.len() > LONGEST_LINE {
            text.push_str(" [cut]");
        }
        let entry = LogLine { at: crate::audit::rfc3339(SystemTime::now()), line: text };
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(entry);
    }

    /// The kept lines, oldest first.
    pub(crate) fn lines(&self) -> Vec<LogLine> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_lines_and_cuts_long_ones() {
        let log = StderrLog::default();
        for n in 0..KEPT_LINES + 5 {
            log.push(format!("line {n}").as_bytes());
        }
        let lines = log.lines();
        assert_eq!(lines.len(), KEPT_LINES);
        assert_eq!(lines[0].line, "line 5");
        assert_eq!(lines[KEPT_LINES - 1].line, format!("line {}", KEPT_LINES + 4));
        log.push(&vec![b'x'; LONGEST_LINE * 2]);
        let last = log.lines().pop().unwrap().line;
        assert_eq!(last.len(), LONGEST_LINE + " [cut]".len());
        log.push(b"not \xff utf-8");
        assert_eq!(log.lines().pop().unwrap().line, "not \u{fffd} utf-8");
    }
}
