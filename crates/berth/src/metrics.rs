//! Prometheus metrics (`prometheus-client`, OpenMetrics text), served on the admin listener.
//!
//! Counters and histograms are atomics behind label families; the hot path resolves a label set
//! with one read lock and one hash (no allocation once the series exists), and per-backend
//! stdio handles ([`StdioStats`]) are resolved once, when the backend is built. Gauges of state
//! (sessions, instances, readiness) are not kept up to date at all: [`BackendGauges`] reads
//! them from the backends at each scrape.
//!
//! Label values are bounded: backends come from the configuration, methods from
//! [`method_label`]'s list, tool names only from what the backend itself listed
//! (`backend.rs`'s `ToolNames`), statuses are numbers. No user name or session id is a label.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{MetricType, counter::Counter, family::Family, gauge::ConstGauge, histogram::Histogram, info::Info},
    registry::Registry,
};

use crate::{route::Routes, stdio::StderrLog};

/// Which listener served a request.
pub(crate) type Listener = &'static str;
/// The MCP listener.
pub(crate) const MCP_LISTENER: Listener = "mcp";
/// The admin listener.
pub(crate) const ADMIN_LISTENER: Listener = "admin";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    listener: Listener,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct McpLabels {
    backend: Arc<str>,
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    backend: Arc<str>,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    backend: Arc<str>,
    tool: Arc<str>,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    backend: Arc<str>,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    backend: Arc<str>,
    state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies: 1 ms to about 65 s.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17))
}

/// Start times of instances: 10 ms to about 160 s.
fn start_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.01, 2.0, 15))
}

/// The MCP methods that get a label of their own; any other is `other`, so that a client
/// cannot grow the label space with invented methods.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// The bounded label of an MCP method.
pub(crate) fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS.iter().find(|known| **known == method).copied().unwrap_or("other")
}

/// Every metric berth keeps, and the registry that encodes them.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    mcp_requests: Family<McpLabels, Counter>,
    mcp_duration: HistogramFamily<MethodLabels>,
    tool_calls: Family<ToolLabels, Counter>,
    restarts: Family<BackendLabels, Counter>,
    start_seconds: HistogramFamily<BackendLabels>,
    stdio_messages: Family<DirectionLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
    audit_dropped: Counter,
    /// Each stdio backend's stderr ring, by name: not a metric, but kept where the other
    /// per-backend records that outlive a rebuild of the backend are made ([`Metrics::stdio_stats`]).
    stderr_logs: Mutex<std::collections::HashMap<String, Arc<StderrLog>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, at zero.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            http_requests: Family::default(),
            auth_failures: Family::default(),
            mcp_requests: Family::default(),
            mcp_duration: Family::new_with_constructor(latency_histogram),
            tool_calls: Family::default(),
            restarts: Family::default(),
            start_seconds: Family::new_with_constructor(start_histogram),
            stdio_messages: Family::default(),
            config_reloads: Family::default(),
            audit_dropped: Counter::default(),
            stderr_logs: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "berth_http_requests",
            "HTTP requests answered, by listener and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "berth_auth_failures",
            "Requests refused for missing or wrong credentials",
            metrics.auth_failures.clone(),
        );
        registry.register(
            "berth_mcp_requests",
            "MCP requests by backend, method and outcome (ok, error, refused)",
            metrics.mcp_requests.clone(),
        );
        registry.register_with_unit(
            "berth_mcp_request_duration",
            "Time from an MCP request to the end of its answer",
            prometheus_client::registry::Unit::Seconds,
            metrics.mcp_duration.clone(),
        );
        registry.register(
            "berth_tool_calls",
            "tools/call by backend, tool (as the backend listed it, else other) and outcome",
            metrics.tool_calls.clone(),
        );
        registry.register(
            "berth_instance_restarts",
            "Restarts of stdio instances after a crash or failed start",
            metrics.restarts.clone(),
        );
        registry.register_with_unit(
            "berth_instance_start",
            "Time from launching a stdio instance to the end of its handshake",
            prometheus_client::registry::Unit::Seconds,
            metrics.start_seconds.clone(),
        );
        registry.register(
            "berth_stdio_messages",
            "Lines written to (to_server) and read from (from_server) stdio servers",
            metrics.stdio_messages.clone(),
        );
        registry.register("berth_config_reloads", "Configuration reloads by result", metrics.config_reloads.clone());
        registry.register(
            "berth_audit_dropped",
            "Audit lines dropped (queue full or write failed)",
            metrics.audit_dropped.clone(),
        );
        registry.register(
            "berth_build",
            "berth's version",
            Info::new(VersionLabels { version: env!("CARGO_PKG_VERSION") }),
        );
        // The reload results exist from the start, so that dashboards see zeros, not gaps.
        for result in ["ok", "error"] {
            let _ = metrics.config_reloads.get_or_create(&ResultLabels { result });
        }
        Self { registry, ..metrics }
    }

    /// Adds the gauges read from the backends at each scrape.
    pub(crate) fn register_backends(&mut self, routes: Arc<Routes>) {
        self.registry.register_collector(Box::new(BackendGauges(routes)));
    }

    /// The OpenMetrics text of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            let _ = writeln!(text, "# EOF");
        }
        text
    }

    /// One HTTP answer of `listener`.
    pub(crate) fn http_request(&self, listener: Listener, status: u16) {
        self.http_requests.get_or_create(&HttpLabels { listener, status }).inc();
    }

    /// A request refused for its credentials: `missing`, `malformed` or `wrong`.
    pub(crate) fn auth_failure(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// One MCP exchange that ended.
    pub(crate) fn mcp_request(
        &self,
        backend: &Arc<str>,
        method: &'static str,
        outcome: &'static str,
        seconds: Option<f64>,
    ) {
        self.mcp_requests.get_or_create(&McpLabels { backend: Arc::clone(backend), method, outcome }).inc();
        if let Some(seconds) = seconds {
            self.mcp_duration.get_or_create(&MethodLabels { backend: Arc::clone(backend), method }).observe(seconds);
        }
    }

    /// One `tools/call`; `tool` is already bounded (a listed name or `other`).
    pub(crate) fn tool_call(&self, backend: &Arc<str>, tool: Arc<str>, outcome: &'static str) {
        self.tool_calls.get_or_create(&ToolLabels { backend: Arc::clone(backend), tool, outcome }).inc();
    }

    /// Counts a configuration reload, `ok` or `error`.
    pub(crate) fn config_reload(&self, result: &'static str) {
        self.config_reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// The counter of dropped audit lines, for the audit writer.
    pub(crate) fn audit_dropped(&self) -> Counter {
        self.audit_dropped.clone()
    }

    /// The handles a stdio backend's instances count with, resolved once.
    pub(crate) fn stdio_stats(&self, backend: &str) -> Arc<StdioStats> {
        let backend: Arc<str> = backend.into();
        let labels = BackendLabels { backend: Arc::clone(&backend) };
        let direction = |direction| DirectionLabels { backend: Arc::clone(&backend), direction };
        Arc::new(StdioStats {
            restarts: self.restarts.get_or_create_owned(&labels),
            start_seconds: self.start_seconds.get_or_create_owned(&labels),
            to_server: self.stdio_messages.get_or_create_owned(&direction("to_server")),
            from_server: self.stdio_messages.get_or_create_owned(&direction("from_server")),
            last_error: Mutex::new(None),
            stderr: Arc::clone(
                self.stderr_logs.lock().unwrap_or_else(|e| e.into_inner()).entry(backend.to_string()).or_default(),
            ),
        })
    }
}

/// What the instances of one stdio backend count, shared by all of them.
#[derive(Debug)]
pub(crate) struct StdioStats {
    /// Runs that ended in failure (each is followed by a restart unless berth stops).
    pub(crate) restarts: Counter,
    /// Launch-to-ready times.
    pub(crate) start_seconds: Histogram,
    /// Lines written to servers' stdin.
    pub(crate) to_server: Counter,
    /// Lines read from servers' stdout.
    pub(crate) from_server: Counter,
    /// The latest failure of any instance, and when.
    last_error: Mutex<Option<(String, SystemTime)>>,
    /// The last stderr lines of its servers (the same ring for every build of the backend).
    pub(crate) stderr: Arc<StderrLog>,
}

impl Default for StdioStats {
    fn default() -> Self {
        Metrics::new().stdio_stats("-").as_ref().clone_handles()
    }
}

impl StdioStats {
    /// The same handles, with no error recorded (for [`Default`]).
    fn clone_handles(&self) -> Self {
        Self {
            restarts: self.restarts.clone(),
            start_seconds: self.start_seconds.clone(),
            to_server: self.to_server.clone(),
            from_server: self.from_server.clone(),
            last_error: Mutex::new(None),
            stderr: Arc::clone(&self.stderr),
        }
    }

    /// Records a failed run.
    pub(crate) fn failed(&self, error: &str) {
        self.restarts.inc();
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some((error.to_string(), SystemTime::now()));
    }

    /// The latest failure, and when.
    pub(crate) fn last_error(&self) -> Option<(String, SystemTime)> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// `berth_sessions`, `berth_instances` and `berth_backend_ready`, read from the backends when
/// Prometheus scrapes.
#[derive(Debug)]
struct BackendGauges(Arc<Routes>);

impl Collector for BackendGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let statuses: Vec<_> =
            self.0.backends().iter().map(|backend| (Arc::<str>::from(backend.name()), backend.status())).collect();
        {
            let mut sessions =
                encoder.encode_descriptor("berth_sessions", "Open MCP sessions", None, MetricType::Gauge)?;
            for (name, status) in &statuses {
                if let Some(count) = status.sessions {
                    let labels = BackendLabels { backend: Arc::clone(name) };
                    ConstGauge::new(count as i64).encode(sessions.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut instances =
                encoder.encode_descriptor("berth_instances", "Stdio instances by state", None, MetricType::Gauge)?;
            for (name, status) in &statuses {
                for state in crate::backend::INSTANCE_STATES {
                    let count = status.instances.iter().filter(|i| i.state == *state).count();
                    let labels = StateLabels { backend: Arc::clone(name), state };
                    ConstGauge::new(count as i64).encode(instances.encode_family(&labels)?)?;
                }
            }
        }
        let mut ready = encoder.encode_descriptor(
            "berth_backend_ready",
            "1 when the backend can serve",
            None,
            MetricType::Gauge,
        )?;
        for (name, status) in &statuses {
            let labels = BackendLabels { backend: Arc::clone(name) };
            ConstGauge::new(i64::from(status.ready)).encode(ready.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("tools/call2"), "other");
        assert_eq!(method_label(""), "other");
    }

    #[test]
    fn every_named_metric_is_exposed() {
        let metrics = Metrics::new();
        metrics.http_request(MCP_LISTENER, 200);
        metrics.auth_failure("wrong");
        let text = metrics.encode();
        for needle in [
            "berth_http_requests_total{listener=\"mcp\",status=\"200\"} 1",
            "berth_auth_failures_total{reason=\"wrong\"} 1",
            "berth_config_reloads_total{result=\"ok\"} 0",
            "berth_build_info{version=",
            "berth_audit_dropped_total 0",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
