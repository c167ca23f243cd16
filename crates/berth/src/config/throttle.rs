//! `[auth.throttle]`: how many failed logins berth evaluates before it answers `429` unasked.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigDuration, ConfigError, Source};

/// `[auth.throttle]`. On by default: a bcrypt check is the most expensive thing an anonymous
/// client can make berth do, and guessing passwords is the attack Basic auth invites.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// `false` turns throttling off (a proxy in front does it, say).
    pub enabled: bool,
    /// Failed logins evaluated per client address (IPv6 by /64).
    pub address: RateConfig,
    /// Failed logins evaluated per user name, from all addresses together.
    pub user: RateConfig,
    /// How many addresses and how many user names are tracked at most; beyond it the untracked
    /// share one bucket of the `address` rate, so memory stays bounded under any attack.
    pub tracked: usize,
    /// How many (address, user) pairs that logged in are remembered: they pass without being
    /// counted, so an attack on a user does not lock that user out where they logged in before.
    pub remembered: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: RateConfig { guesses: 20, per: ConfigDuration(Duration::from_secs(600)), burst: 5 },
            user: RateConfig { guesses: 80, per: ConfigDuration(Duration::from_secs(600)), burst: 20 },
            tracked: 100_000,
            remembered: 10_000,
        }
    }
}

/// A rate of failed logins: `burst` at once, then `guesses` per `per`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Logins evaluated per `per` once the burst is spent.
    pub guesses: u32,
    /// The period of `guesses`.
    pub per: ConfigDuration,
    /// Logins evaluated at once before the rate applies.
    pub burst: u32,
}

impl RateConfig {
    /// The time one guess takes to be earned back.
    pub(crate) fn interval(&self) -> Duration {
        self.per.0.checked_div(self.guesses).unwrap_or_default()
    }
}

impl ThrottleConfig {
    /// Checks the values that would make a throttle that refuses everybody or nobody.
    pub(crate) fn validate(&self, source: &Source) -> Result<(), ConfigError> {
        for (field, rate) in [("auth.throttle.address", &self.address), ("auth.throttle.user", &self.user)] {
            if rate.guesses == 0 || rate.burst == 0 {
                return Err(source.invalid(None, field, "`guesses` and `burst` must be at least 1"));
            }
            if rate.interval() < Duration::from_micros(1) {
                return Err(source.invalid(None, field, "`per` divided by `guesses` must be at least 1µs"));
            }
        }
        if self.tracked == 0 {
            return Err(source.invalid(None, "auth.throttle.tracked", "must be at least 1"));
        }
        Ok(())
    }
}
