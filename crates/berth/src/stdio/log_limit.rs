//! Rate limits for log lines caused by what a server writes, so that a server writing junk at
//! full speed cannot flood berth's log: each cause is logged once per window, and the next line
//! of that cause says how many were suppressed meanwhile.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Per-cause rate limits.
#[derive(Debug)]
pub(crate) struct LogLimit {
    window: Duration,
    per_window: u32,
    causes: Mutex<HashMap<&'static str, Window>>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    /// At most `per_window` lines per cause per `window`.
    pub(crate) fn new(window: Duration, per_window: u32) -> Self {
        Self { window, per_window, causes: Mutex::new(HashMap::new()) }
    }

    /// Whether an occurrence of `cause` is logged now: `Some(n)` with the number of occurrences
    /// suppressed since the last logged one, or `None` to stay quiet.
    pub(crate) fn admit(&self, cause: &'static str) -> Option<u64> {
        let mut causes = self.causes.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let window = causes.entry(cause).or_insert(Window { started: now, logged: 0, suppressed: 0 });
        if now.duration_since(window.started) >= self.window {
            window.started = now;
            window.logged = 0;
        }
        if window.logged < self.per_window {
            window.logged += 1;
            Some(std::mem::take(&mut window.suppressed))
        } else {
            window.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_logged_once_per_window_with_the_count_suppressed() {
        let limit = LogLimit::new(Duration::from_millis(50), 1);
        assert_eq!(limit.admit("junk"), Some(0));
        for _ in 0..1000 {
            assert_eq!(limit.admit("junk"), None);
        }
        assert_eq!(limit.admit("other"), Some(0), "causes are counted apart");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(limit.admit("junk"), Some(1000));
    }
}
