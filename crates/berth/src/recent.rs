//! What happened in the last minutes, for the status page: per backend, the MCP POSTs of each
//! of the last [`MINUTES`] minutes with a sample of their latencies, and the latest failures.
//!
//! Memory is bounded: [`MINUTES`] buckets per backend of at most [`SAMPLES`] latencies each,
//! and [`FAILURES`] failures in all. A bucket keeps the first `SAMPLES` latencies of its minute
//! and then replaces them in turn, so a busy minute is sampled across its length.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// How many minutes the page looks back.
pub(crate) const MINUTES: u64 = 5;
/// Latency samples kept per backend and minute.
const SAMPLES: usize = 1024;
/// Failures kept.
pub(crate) const FAILURES: usize = 20;

/// One minute of one backend.
#[derive(Debug, Default, Clone)]
struct Bucket {
    /// The minute since the epoch.
    minute: u64,
    calls: u64,
    errors: u64,
    /// Latencies in microseconds.
    samples: Vec<u32>,
}

/// One failed MCP request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Failure {
    /// When it arrived (RFC 3339).
    pub(crate) at: String,
    /// The backend.
    pub(crate) backend: String,
    /// The MCP method (bounded, as in the metrics).
    pub(crate) method: &'static str,
    /// `error` or `refused`.
    pub(crate) outcome: &'static str,
    /// The HTTP status.
    pub(crate) status: u16,
}

/// A backend's last minutes, summed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Summary {
    /// MCP POSTs answered in the window.
    pub(crate) calls: u64,
    /// Of which failed (`error` or `refused`).
    pub(crate) errors: u64,
    /// Calls per minute over the window.
    pub(crate) per_minute: f64,
    /// Median latency, when there were calls.
    pub(crate) p50: Option<Duration>,
    /// 99th percentile latency, when there were calls.
    pub(crate) p99: Option<Duration>,
}

/// The recorder, shared by the MCP stack (which writes) and the status page (which reads).
#[derive(Debug)]
pub(crate) struct Recent {
    started: SystemTime,
    backends: Mutex<HashMap<Arc<str>, VecDeque<Bucket>>>,
    failures: Mutex<VecDeque<Failure>>,
}

impl Default for Recent {
    fn default() -> Self {
        Self { started: SystemTime::now(), backends: Mutex::default(), failures: Mutex::default() }
    }
}

fn minute_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() / 60)
}

impl Recent {
    /// One answered MCP POST on `backend`, that took `elapsed` and ended in `outcome`.
    pub(crate) fn record(&self, backend: &Arc<str>, elapsed: Duration, outcome: &'static str) {
        self.record_at(backend, elapsed, outcome, SystemTime::now());
    }

    fn record_at(&self, backend: &Arc<str>, elapsed: Duration, outcome: &'static str, now: SystemTime) {
        let minute = minute_of(now);
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = backends.entry(Arc::clone(backend)).or_default();
        if buckets.back().is_none_or(|bucket| bucket.minute != minute) {
            buckets.push_back(Bucket { minute, ..Bucket::default() });
        }
        while buckets.front().is_some_and(|bucket| bucket.minute + MINUTES <= minute) {
            buckets.pop_front();
        }
        let Some(bucket) = buckets.back_mut() else { return };
        let micros = u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX);
        if bucket.samples.len() < SAMPLES {
            bucket.samples.push(micros);
        } else {
            let slot = (bucket.calls % SAMPLES as u64) as usize;
            bucket.samples[slot] = micros;
        }
        bucket.calls += 1;
        if outcome != "ok" {
            bucket.errors += 1;
        }
    }

    /// One failed MCP request, for the latest-failures list.
    pub(crate) fn failed(&self, failure: Failure) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() == FAILURES {
            failures.pop_back();
        }
        failures.push_front(failure);
    }

    /// The latest failures, newest first.
    pub(crate) fn failures(&self) -> Vec<Failure> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// `backend`'s last [`MINUTES`] minutes.
    pub(crate) fn summary(&self, backend: &str) -> Summary {
        self.summary_at(backend, SystemTime::now())
    }

    fn summary_at(&self, backend: &str, now: SystemTime) -> Summary {
        let minute = minute_of(now);
        let backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = backends.get(backend).into_iter().flatten().filter(|bucket| bucket.minute + MINUTES > minute);
        let mut summary = Summary::default();
        let mut samples = Vec::new();
        for bucket in buckets {
            summary.calls += bucket.calls;
            summary.errors += bucket.errors;
            samples.extend_from_slice(&bucket.samples);
        }
        drop(backends);
        // The window is the last MINUTES minutes, or less while berth has not run that long.
        let running = now.duration_since(self.started).unwrap_or_default().as_secs_f64() / 60.0;
        summary.per_minute = summary.calls as f64 / running.clamp(1.0, MINUTES as f64);
        samples.sort_unstable();
        let quantile = |q: f64| {
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            Duration::from_micros(u64::from(samples[index]))
        };
        if !samples.is_empty() {
            summary.p50 = Some(quantile(0.50));
            summary.p99 = Some(quantile(0.99));
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_sums_the_last_minutes_and_forgets_older_ones() {
        let recent = Recent::default();
        let fx: Arc<str> = "fx".into();
        let start = UNIX_EPOCH + Duration::from_secs(60 * 1_000_000);
        for ms in 1..=100 {
            recent.record_at(&fx, Duration::from_millis(ms), if ms == 100 { "error" } else { "ok" }, start);
        }
        let summary = recent.summary_at("fx", start);
        assert_eq!((summary.calls, summary.errors), (100, 1));
        assert_eq!(summary.p50, Some(Duration::from_millis(50)));
        assert_eq!(summary.p99, Some(Duration::from_millis(99)));
        // Four minutes on, still in the window; five minutes on, gone.
        assert_eq!(recent.summary_at("fx", start + Duration::from_secs(4 * 60)).calls, 100);
        recent.record_at(&fx, Duration::from_millis(7), "ok", start + Duration::from_secs(5 * 60));
        let later = recent.summary_at("fx", start + Duration::from_secs(5 * 60));
        assert_eq!((later.calls, later.p50), (1, Some(Duration::from_millis(7))));
        assert_eq!(recent.summary_at("other", start), Summary::default());
    }

    #[test]
    fn a_busy_minute_keeps_a_bounded_sample_and_failures_are_bounded() {
        let recent = Recent::default();
        let fx: Arc<str> = "fx".into();
        for _ in 0..(SAMPLES * 3) {
            recent.record(&fx, Duration::from_millis(1), "ok");
        }
        let backends = recent.backends.lock().unwrap();
        assert!(backends["fx"].iter().all(|bucket| bucket.samples.len() <= SAMPLES));
        drop(backends);
        for n in 0..(FAILURES + 5) {
            recent.failed(Failure {
                at: n.to_string(),
                backend: "fx".into(),
                method: "tools/call",
                outcome: "error",
                status: 200,
            });
        }
        let failures = recent.failures();
        assert_eq!(failures.len(), FAILURES);
        assert_eq!(failures[0].at, (FAILURES + 4).to_string(), "newest first");
    }
}
