//! Failed-login throttling, checked before any password work.
//!
//! Two token buckets (GCRA, from `governor`) per credential that is not known to be good: one
//! for the client address (IPv6 by its /64, which one host usually owns whole) and one for the
//! user name. A login is evaluated only when both have a cell; each evaluated login that is not
//! remembered spends one from each. A refused login costs one hash lookup and no bcrypt.
//!
//! A (address, user) pair that logged in is remembered (bounded, oldest forgotten first) and
//! passes without spending: an attack on alice from many addresses empties alice's bucket, but
//! alice at the desk she logged in from before is never refused. Such a pair that then fails is
//! forgotten at once, so an attacker sharing alice's address gets one free guess, not many.
//!
//! Memory is bounded whatever the attack: each bucket map holds at most `tracked` keys (user
//! names are kept as 64-bit keyed hashes, never as the attacker's text). A full map first drops
//! the keys whose buckets are full again (at most once a second); keys that still find no room
//! share one overflow bucket of the address rate.

use std::{
    hash::{BuildHasher, Hash, Hasher, RandomState},
    net::IpAddr,
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};

use super::bounded::Bounded;
use crate::config::{RateConfig, ThrottleConfig};

/// Where one throttled key lives: an address or a user name's hash, or the overflow bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// A client address (IPv6 cut to its /64).
    Address(IpAddr),
    /// The keyed hash of a user name.
    User(u64),
    /// Every key that found the map full.
    Overflow,
}

/// What [`Throttle::admit`] decided about one login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The pair logged in before: evaluate without counting.
    Remembered,
    /// A cell was spent from each bucket: evaluate.
    Counted,
    /// Too many failures: answer `429` without evaluating, and ask to retry after this long.
    Refused(Duration),
}

/// One bucket map of bounded size.
#[derive(Debug)]
struct Buckets {
    limiter: DefaultKeyedRateLimiter<Key>,
    tracked: usize,
    /// When full buckets were last dropped, so that a map kept full costs one sweep a second.
    last_sweep: Mutex<Instant>,
}

impl Buckets {
    fn new(rate: &RateConfig, tracked: usize) -> Self {
        Self { limiter: RateLimiter::keyed(quota(rate)), tracked, last_sweep: Mutex::new(Instant::now()) }
    }

    /// Spends a cell of `key`'s bucket, or says how long until there is one.
    fn spend(&self, key: Key) -> Result<(), Duration> {
        let key = if self.limiter.len() < self.tracked || self.sweep() { key } else { Key::Overflow };
        self.limiter.check_key(&key).map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Drops the buckets that are full again, at most once a second; answers whether there is
    /// room now.
    fn sweep(&self) -> bool {
        let mut last = self.last_sweep.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() >= Duration::from_secs(1) {
            *last = Instant::now();
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.len() < self.tracked
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.limiter.len()
    }
}

/// `burst` at once, then one each `per / guesses`.
fn quota(rate: &RateConfig) -> Quota {
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    // Validation keeps the interval at 1µs or more; the fallback only guards the type.
    Quota::with_period(rate.interval().max(Duration::from_micros(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

/// The failed-login throttle of one berth, shared by its MCP and admin listeners.
#[derive(Debug)]
pub(crate) struct Throttle {
    by_address: Buckets,
    by_user: Buckets,
    /// Pairs that logged in, by keyed hash of (address key, user name).
    remembered: Mutex<Bounded<u64, ()>>,
    hasher: RandomState,
}

impl Throttle {
    /// The throttle `[auth.throttle]` describes, or none when it is disabled.
    pub(crate) fn new(config: &ThrottleConfig) -> Option<Self> {
        config.enabled.then(|| Self {
            by_address: Buckets::new(&config.address, config.tracked),
            by_user: Buckets::new(&config.user, config.tracked),
            remembered: Mutex::new(Bounded::new(config.remembered)),
            hasher: RandomState::new(),
        })
    }

    /// Decides whether a login of `user` from `client` is evaluated.
    pub(crate) fn admit(&self, client: Option<IpAddr>, user: &str) -> Admission {
        let address = address_key(client);
        if self.lock_remembered().get(&self.pair(address, user)).is_some() {
            return Admission::Remembered;
        }
        if let Err(wait) = self.by_address.spend(Key::Address(address)) {
            return Admission::Refused(wait);
        }
        match self.by_user.spend(Key::User(self.user_hash(user))) {
            Ok(()) => Admission::Counted,
            Err(wait) => Admission::Refused(wait),
        }
    }

    /// Records the outcome of an evaluated login.
    pub(crate) fn outcome(&self, client: Option<IpAddr>, user: &str, admission: Admission, accepted: bool) {
        let pair = self.pair(address_key(client), user);
        match (accepted, admission) {
            (true, Admission::Counted) => self.lock_remembered().insert(pair, ()),
            (false, Admission::Remembered) => self.lock_remembered().remove(&pair),
            _ => {}
        }
    }

    fn lock_remembered(&self) -> std::sync::MutexGuard<'_, Bounded<u64, ()>> {
        self.remembered.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn user_hash(&self, user: &str) -> u64 {
        self.hasher.hash_one(user)
    }

    fn pair(&self, address: IpAddr, user: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        address.hash(&mut hasher);
        user.hash(&mut hasher);
        hasher.finish()
    }
}

/// The address a bucket is kept for: IPv4 as it is (IPv4-mapped IPv6 included), IPv6 cut to
/// its /64; an unknown client (never the case behind berth's own listener) is `0.0.0.0`.
fn address_key(client: Option<IpAddr>) -> IpAddr {
    match client.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        Some(v4) => v4,
        None => IpAddr::from([0, 0, 0, 0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigDuration;

    fn config(address_burst: u32, user_burst: u32, tracked: usize) -> ThrottleConfig {
        let hour = ConfigDuration(Duration::from_secs(3600));
        ThrottleConfig {
            address: RateConfig { guesses: 1, per: hour, burst: address_burst },
            user: RateConfig { guesses: 1, per: hour, burst: user_burst },
            tracked,
            ..ThrottleConfig::default()
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn one_address_is_refused_after_its_burst_and_told_when_to_retry() {
        let throttle = Throttle::new(&config(3, 100, 1000)).unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.admit(ip("10.0.0.1"), "alice"), Admission::Counted);
            throttle.outcome(ip("10.0.0.1"), "alice", Admission::Counted, false);
        }
        let Admission::Refused(wait) = throttle.admit(ip("10.0.0.1"), "bob") else { panic!("refused") };
        assert!(wait > Duration::from_secs(3000) && wait <= Duration::from_secs(3600), "{wait:?}");
        // Another address is not affected; nor is the same /64 spared.
        assert_eq!(throttle.admit(ip("10.0.0.2"), "bob"), Admission::Counted);
        for _ in 0..3 {
            assert_eq!(throttle.admit(ip("2001:db8::1"), "carol"), Admission::Counted);
        }
        assert!(matches!(throttle.admit(ip("2001:db8::ffff:1"), "carol"), Admission::Refused(_)));
        assert_eq!(throttle.admit(ip("2001:db8:0:1::1"), "carol"), Admission::Counted);
        // IPv4-mapped IPv6 is the IPv4 address.
        assert!(matches!(throttle.admit(ip("::ffff:10.0.0.1"), "dave"), Admission::Refused(_)));
    }

    #[test]
    fn a_user_attacked_from_everywhere_still_logs_in_where_it_did_before() {
        let throttle = Throttle::new(&config(100, 5, 1000)).unwrap();
        assert_eq!(throttle.admit(ip("10.9.9.9"), "alice"), Admission::Counted);
        throttle.outcome(ip("10.9.9.9"), "alice", Admission::Counted, true);
        let mut counted = 0;
        for i in 0..200u8 {
            let client = Some(IpAddr::from([10, 1, 0, i]));
            let admission = throttle.admit(client, "alice");
            if admission == Admission::Counted {
                counted += 1;
                throttle.outcome(client, "alice", admission, false);
            }
        }
        assert_eq!(counted, 4, "the burst of 5, one spent by the real login");
        assert_eq!(throttle.admit(ip("10.9.9.9"), "alice"), Admission::Remembered);
        assert_eq!(throttle.admit(ip("10.1.0.7"), "bob"), Admission::Counted, "other users are not affected");
        // A remembered pair that fails is forgotten: its next attempt is counted (and refused).
        throttle.outcome(ip("10.9.9.9"), "alice", Admission::Remembered, false);
        assert!(matches!(throttle.admit(ip("10.9.9.9"), "alice"), Admission::Refused(_)));
    }

    #[test]
    fn disabled_means_no_throttle() {
        assert!(Throttle::new(&ThrottleConfig { enabled: false, ..ThrottleConfig::default() }).is_none());
    }

    /// The peak resident size of this process, from `/proc/self/status`.
    fn peak_rss_bytes() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    #[test]
    fn a_million_distinct_failures_stay_within_64_mib() {
        // The defaults, so that the bound measured is the one berth runs with.
        let config = ThrottleConfig::default();
        let throttle = Throttle::new(&config).unwrap();
        let before = peak_rss_bytes();
        let mut refused = 0u32;
        for i in 0..1_000_000u32 {
            let client = Some(IpAddr::from((0x0a00_0000 | i).to_be_bytes()));
            let user = format!("user-{i}");
            match throttle.admit(client, &user) {
                Admission::Refused(_) => refused += 1,
                admission => throttle.outcome(client, &user, admission, false),
            }
        }
        let grown = peak_rss_bytes().saturating_sub(before);
        assert!(throttle.by_address.len() <= config.tracked + 1);
        assert!(throttle.by_user.len() <= config.tracked + 1);
        // Once both maps are full, fresh keys share the overflow bucket, which soon refuses.
        assert!(refused > 800_000, "{refused} refused");
        println!("a million distinct failures: peak RSS grew {} KiB", grown / 1024);
        assert!(grown < 64 << 20, "the throttle grew the process by {grown} bytes");
    }
}
