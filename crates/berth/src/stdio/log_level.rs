//! The eight log levels of MCP's `logging/setLevel` (RFC 5424's, most verbose first), and what
//! a session of a shared instance is sent of the server's `notifications/message`.
//!
//! One server process serves every session of a shared instance, so one session's
//! `logging/setLevel` would set the level of all. berth keeps each session's level itself:
//! the server is told only a level more verbose than any it was told before (so it sends what
//! the most verbose session wants), other `setLevel`s are answered by berth, and each message
//! goes to the sessions whose level it reaches: a session that set none gets everything until
//! some session sets a level, then `info` and above.

use std::sync::atomic::{AtomicU8, Ordering};

/// A log level; the order is the severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LogLevel(u8);

/// The names, most verbose first.
const NAMES: [&str; 8] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// `info`: what a session that set no level gets once another one did.
pub(crate) const INFO: LogLevel = LogLevel(1);

/// Stored in an [`AtomicLevel`] when no level was set.
const UNSET: u8 = u8::MAX;

impl LogLevel {
    /// Parses a level's name.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        NAMES.iter().position(|known| *known == name).and_then(|at| u8::try_from(at).ok()).map(Self)
    }
}

/// A level that may be unset, shared between threads.
#[derive(Debug)]
pub(crate) struct AtomicLevel(AtomicU8);

impl Default for AtomicLevel {
    fn default() -> Self {
        Self(AtomicU8::new(UNSET))
    }
}

impl AtomicLevel {
    /// The level, if one was set.
    pub(crate) fn get(&self) -> Option<LogLevel> {
        let level = self.0.load(Ordering::Relaxed);
        (level != UNSET).then_some(LogLevel(level))
    }

    /// Sets it.
    pub(crate) fn set(&self, level: LogLevel) {
        self.0.store(level.0, Ordering::Relaxed);
    }

    /// Lowers it to `level` if that is more verbose than the level it holds (or it holds none);
    /// answers whether it did.
    pub(crate) fn lower_to(&self, level: LogLevel) -> bool {
        self.0.fetch_min(level.0, Ordering::Relaxed) > level.0
    }
}

/// Whether a session whose own level is `own` is sent a message of `level`, when `any_set` says
/// whether any session of the instance set a level.
pub(crate) fn wants(own: Option<LogLevel>, level: LogLevel, any_set: bool) -> bool {
    match own {
        Some(own) => level >= own,
        None => !any_set || level >= INFO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_and_the_instance_level_only_goes_down() {
        let (debug, warning) = (LogLevel::parse("debug").unwrap(), LogLevel::parse("warning").unwrap());
        assert!(debug < INFO && INFO < warning && LogLevel::parse("loud").is_none());
        let instance = AtomicLevel::default();
        assert!(instance.lower_to(warning), "the first level is told");
        assert!(!instance.lower_to(LogLevel::parse("error").unwrap()), "a less verbose one is not");
        assert!(instance.lower_to(debug) && instance.get() == Some(debug));
        assert!(wants(Some(warning), LogLevel::parse("error").unwrap(), true));
        assert!(!wants(Some(warning), INFO, true));
        assert!(wants(None, debug, false) && !wants(None, debug, true) && wants(None, INFO, true));
    }
}
