//! What one load run measured: calls, errors, elapsed time and every call's latency.

use std::time::Duration;

/// The record of one worker, merged into a [`Run`] at the end.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Latency of each successful call, in microseconds.
    pub(crate) micros: Vec<u32>,
    /// Calls answered with an error (HTTP status, JSON-RPC error, broken stream).
    pub(crate) errors: u64,
}

impl Tally {
    /// Records one successful call.
    pub(crate) fn ok(&mut self, latency: Duration) {
        self.micros.push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }
}

/// The summary of one load run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Run {
    /// Successful calls.
    pub(crate) calls: u64,
    /// Failed calls.
    pub(crate) errors: u64,
    /// Successful calls per second of wall time.
    pub(crate) per_sec: f64,
    /// Latency percentiles, in milliseconds.
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    /// CPU time of the load generator (this process) per call, in microseconds (see `cpu.rs`).
    pub(crate) client_us: Option<f64>,
    /// CPU time of the gateway process per call, in microseconds.
    pub(crate) gateway_us: Option<f64>,
    /// CPU time of the stdio server's processes per call, in microseconds.
    pub(crate) server_us: Option<f64>,
}

impl Run {
    /// Merges the workers' tallies of a run that took `elapsed`.
    pub(crate) fn from_tallies(tallies: Vec<Tally>, elapsed: Duration) -> Self {
        let errors = tallies.iter().map(|t| t.errors).sum();
        let mut micros: Vec<u32> = tallies.into_iter().flat_map(|t| t.micros).collect();
        micros.sort_unstable();
        let at = |q: f64| -> f64 {
            if micros.is_empty() {
                return 0.0;
            }
            let index = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
            f64::from(micros[index]) / 1000.0
        };
        let calls = micros.len() as u64;
        Self {
            calls,
            errors,
            per_sec: calls as f64 / elapsed.as_secs_f64().max(1e-9),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            client_us: None,
            gateway_us: None,
            server_us: None,
        }
    }

    /// Merges rounds of the same side: calls and time add up, percentiles are those of the
    /// round with the median throughput (a fair middle on a noisy shared machine).
    pub(crate) fn median_of(rounds: &[Run]) -> Run {
        let mut sorted = rounds.to_vec();
        sorted.sort_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
        let mut median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
        median.calls = rounds.iter().map(|r| r.calls).sum();
        median.errors = rounds.iter().map(|r| r.errors).sum();
        median
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let tally = Tally { micros: (1..=100).map(|ms| ms * 1000).collect(), errors: 2 };
        let run = Run::from_tallies(vec![tally], Duration::from_secs(2));
        assert_eq!(run.calls, 100);
        assert_eq!(run.errors, 2);
        assert_eq!(run.per_sec, 50.0);
        assert_eq!((run.p50, run.p90, run.p99), (50.0, 90.0, 99.0));
    }
}
