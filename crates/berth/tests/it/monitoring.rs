//! The monitoring kit under `deploy/`: every PromQL expression of the Grafana dashboard and of
//! the alerting rules is parsed, and every metric and label it selects must exist in the
//! `/metrics` of a live berth after real traffic, so a renamed metric breaks this test rather
//! than an operator's dashboard.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use promql_parser::parser::{self, Expr, LabelModifier};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    admin::{admin_config, scrape},
    harness::{Berth, USER, basic, http, repo_root},
    raw::RawSession,
};

/// What the scrape exposes: each sample name with the label names its series carry.
type Exposed = BTreeMap<String, BTreeSet<String>>;

/// The sample names and label names of an OpenMetrics text (`# TYPE berth_x counter` exposes
/// `berth_x_total` samples, a histogram `berth_x_bucket`, `_sum` and `_count`).
fn exposed(text: &str) -> Exposed {
    let mut exposed = Exposed::new();
    for line in text.lines().filter(|line| !line.starts_with('#') && !line.is_empty()) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = exposed.entry(line[..end].to_string()).or_default();
        let Some(rest) = line[end..].strip_prefix('{') else { continue };
        // Label values are quoted and may hold escaped quotes, commas and braces.
        let (mut in_value, mut escaped, mut name) = (false, false, String::new());
        for c in rest.chars() {
            match (in_value, c) {
                (true, '\\') if !escaped => escaped = true,
                (true, '"') if !escaped => in_value = false,
                (true, _) => escaped = false,
                (false, '=') => {
                    labels.insert(std::mem::take(&mut name));
                }
                (false, '"') => in_value = true,
                (false, '}') => break,
                (false, ',' | ' ') => {}
                (false, c) => name.push(c),
            }
        }
    }
    exposed
}

/// A metric an expression selects and the labels it needs on it (from matchers, and from the
/// `by (...)` clauses of the aggregations around it).
#[derive(Debug, Default)]
struct Uses(BTreeMap<String, BTreeSet<String>>);

impl Uses {
    /// Walks `expr`; `grouping` is the labels of the enclosing `by` clauses.
    fn walk(&mut self, expr: &Expr, grouping: &BTreeSet<String>) {
        match expr {
            Expr::Aggregate(aggregate) => {
                let mut inner = grouping.clone();
                if let Some(LabelModifier::Include(labels)) = &aggregate.modifier {
                    inner.extend(labels.labels.iter().cloned());
                }
                self.walk(&aggregate.expr, &inner);
                if let Some(param) = &aggregate.param {
                    self.walk(param, &BTreeSet::new());
                }
            }
            Expr::Unary(unary) => self.walk(&unary.expr, grouping),
            Expr::Binary(binary) => {
                self.walk(&binary.lhs, grouping);
                self.walk(&binary.rhs, grouping);
            }
            Expr::Paren(paren) => self.walk(&paren.expr, grouping),
            Expr::Subquery(subquery) => self.walk(&subquery.expr, grouping),
            Expr::VectorSelector(selector) => self.select(selector, grouping),
            Expr::MatrixSelector(matrix) => self.select(&matrix.vs, grouping),
            Expr::Call(call) => {
                // histogram_quantile groups by `le` itself, over a `_bucket` series.
                for arg in &call.args.args {
                    self.walk(arg, grouping);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn select(&mut self, selector: &parser::VectorSelector, grouping: &BTreeSet<String>) {
        let name = selector.name.clone().expect("every selector names its metric");
        let labels = self.0.entry(name).or_default();
        labels.extend(grouping.iter().cloned());
        let matchers = selector.matchers.matchers.iter().chain(selector.matchers.or_matchers.iter().flatten());
        labels.extend(matchers.map(|m| m.name.clone()).filter(|name| name != "__name__"));
    }
}

/// Grafana's variables, replaced by what they stand for so that the expression is PromQL.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$backend", ".*")
}

/// Every query of the dashboard: its panels' `targets[].expr` and its template variables'
/// `label_values(metric, label)` (as `count by (label) (metric)`, which selects the same).
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", panel["title"]);
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        queries.extend(targets.iter().map(|target| target["expr"].as_str().unwrap().to_string()));
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let query = variable["query"]["query"].as_str().or(variable["query"].as_str()).unwrap();
        let inner = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).expect(query);
        let (metric, label) = inner.split_once(',').expect(query);
        queries.push(format!("count by ({}) ({})", label.trim(), metric.trim()));
    }
    queries
}

/// Every `expr` of the alerting rules file.
fn rule_queries(rules: &serde_norway::Value) -> Vec<String> {
    let groups = rules["groups"].as_sequence().expect("groups");
    let rules = groups.iter().flat_map(|group| group["rules"].as_sequence().expect("rules"));
    rules.map(|rule| rule["expr"].as_str().expect("expr").to_string()).collect()
}

/// Checks that `queries` parse and select only what `exposed` has; answers the failures.
fn unknown_uses(source: &str, queries: &[String], exposed: &Exposed) -> Vec<String> {
    let mut failures = Vec::new();
    for query in queries {
        let expr = match parser::parse(&substitute(query)) {
            Ok(expr) => expr,
            Err(error) => {
                failures.push(format!("{source}: `{query}` is no PromQL: {error}"));
                continue;
            }
        };
        let mut uses = Uses::default();
        uses.walk(&expr, &BTreeSet::new());
        assert!(!uses.0.is_empty(), "{source}: `{query}` selects no metric");
        for (metric, labels) in &uses.0 {
            let Some(present) = exposed.get(metric) else {
                failures.push(format!("{source}: `{query}` selects {metric}, which /metrics does not have"));
                continue;
            };
            for label in labels.iter().filter(|label| !present.contains(*label)) {
                failures.push(format!("{source}: `{query}` uses label {label}, which {metric} does not have"));
            }
        }
    }
    failures
}

#[tokio::test]
async fn monitoring_kit_queries_only_what_berth_exposes() {
    let berth = Berth::start(&admin_config("", "")).await;
    let url = berth.mcp_url("fx");
    let session = RawSession::open(&url, json!({})).await;
    let tools = session.request(json!(1), "tools/list", json!({})).await;
    assert!(tools["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{tools}");
    assert_eq!(session.tool("echo", json!({"text": "hi"})).await, "hi");
    let refused = http().post(&url).header("authorization", basic(USER, "wrong")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let exposed = exposed(&scrape(&berth).await);
    // The parser itself: a counter's samples, a histogram's buckets and their labels.
    assert!(
        exposed["berth_mcp_requests_total"].is_superset(&["backend", "method", "outcome"].map(String::from).into())
    );
    assert!(exposed["berth_mcp_request_duration_seconds_bucket"].contains("le"), "{exposed:?}");

    let deploy = repo_root().join("deploy");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(deploy.join("grafana/berth.json")).unwrap())
        .expect("berth.json is JSON");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 39), "{}", dashboard["schemaVersion"]);
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let queries = dashboard_queries(&dashboard);
    // Calls, errors, latency, tools, sessions, instances, restarts, ready, auth, reloads, audit.
    assert!(queries.len() >= 12, "{queries:?}");
    let mut failures = unknown_uses("berth.json", &queries, &exposed);

    let prometheus_dir = deploy.join("prometheus");
    let read_yaml = |path: &Path| -> serde_norway::Value {
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{path:?}: {e}"))
    };
    let prometheus = read_yaml(&prometheus_dir.join("prometheus.yml"));
    let jobs = prometheus["scrape_configs"].as_sequence().expect("scrape_configs");
    let berth_job = jobs.iter().find(|job| job["job_name"].as_str() == Some("berth")).expect("a berth job");
    assert_eq!(berth_job["metrics_path"].as_str(), Some("/metrics"));
    assert!(berth_job["basic_auth"]["password_file"].as_str().is_some(), "a password_file, not a password");
    assert_eq!(berth_job["static_configs"][0]["targets"][0].as_str(), Some("127.0.0.1:9180"));
    let rule_files = prometheus["rule_files"].as_sequence().expect("rule_files");
    assert!(!rule_files.is_empty());
    for file in rule_files {
        let path = prometheus_dir.join(file.as_str().unwrap());
        assert!(path.is_file(), "rule file {path:?} is missing");
        let rules = rule_queries(&read_yaml(&path));
        assert!(rules.len() >= 4, "{rules:?}");
        failures.extend(unknown_uses(file.as_str().unwrap(), &rules, &exposed));
    }
    assert!(failures.is_empty(), "{}\n\nexposed: {exposed:#?}", failures.join("\n"));
    // Where Prometheus' own checker is installed (Debian's `prometheus` package), it checks the
    // configuration and, through `rule_files`, the rules as Prometheus will load them.
    let promtool = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(prometheus_dir.join("prometheus.yml"))
        .output();
    match promtool {
        Ok(output) => {
            let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            assert!(output.status.success(), "promtool check config:\n{stdout}{stderr}");
        }
        // scripts/test fetches promtool and sets BERTH_REQUIRE_PROMTOOL: there, its absence is a failure.
        Err(error) => assert!(std::env::var_os("BERTH_REQUIRE_PROMTOOL").is_none(), "promtool cannot run: {error}"),
    }
    berth.stop().await;
}
