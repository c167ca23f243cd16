//! The status page, `/` on the admin listener: server-rendered HTML that reloads itself every
//! [`REFRESH_SECONDS`] seconds, without a line of JavaScript (its Content-Security-Policy
//! forbids scripts altogether).
//!
//! One row per backend (kind, state, readiness, instances, sessions, restarts, last error, and
//! from the last minutes its calls per minute, failures and p50/p99 latency), then the latest
//! failed requests. Every value comes from [`Backend::status`] and [`Recent`], and every text
//! is escaped: backend names, error messages and methods are not trusted to be HTML.

use std::{fmt::Write as _, time::Duration};

use http::{HeaderValue, Response, StatusCode, header};

use crate::{
    backend::Backend,
    body::{ResponseBody, response_body},
    recent::{MINUTES, Recent},
};

/// How often the page reloads itself.
pub(crate) const REFRESH_SECONDS: u32 = 5;

/// `text` safe in HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn latency(duration: Option<Duration>) -> String {
    match duration {
        None => "–".into(),
        Some(d) if d < Duration::from_millis(10) => format!("{:.2} ms", d.as_secs_f64() * 1000.0),
        Some(d) if d < Duration::from_secs(1) => format!("{:.0} ms", d.as_secs_f64() * 1000.0),
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
    }
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#1d2330}\
h1{font-size:20px}h2{font-size:16px;margin-top:2em}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #dde1e8;vertical-align:top}\
th{background:#f3f5f8;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#17803d;font-weight:600}.bad{color:#c0262d;font-weight:600}.muted{color:#6b7280}\
.error{max-width:28em;overflow-wrap:anywhere}";

/// The page.
pub(crate) fn render(backends: &[std::sync::Arc<Backend>], recent: &Recent) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"><title>berth status</title>\
         <style>{STYLE}</style></head><body><h1>berth {}</h1>\
         <p class=\"muted\">Calls, failures and latency over the last {MINUTES} minutes; this page reloads every \
         {REFRESH_SECONDS} s.</p><table id=\"backends\"><thead><tr><th>Backend</th><th>Kind</th><th>State</th>\
         <th>Ready</th><th>Instances</th><th>Sessions</th><th>Restarts</th><th>Calls/min</th><th>Calls</th>\
         <th>Failed</th><th>p50</th><th>p99</th><th>Last error</th></tr></thead><tbody>",
        env!("CARGO_PKG_VERSION")
    );
    for backend in backends {
        let status = backend.status();
        let summary = recent.summary(backend.name());
        let name = escape(backend.name());
        let ready = match (&status.unavailable, status.ready) {
            (_, true) => "<span class=\"ok\">yes</span>".to_string(),
            (None, false) => "<span class=\"bad\">no</span>".to_string(),
            (Some(why), false) => {
                format!("<span class=\"bad\">no</span><br><span class=\"muted\">{}</span>", escape(why))
            }
        };
        let instances: Vec<String> =
            status.instances.iter().map(|i| format!("{} {}", escape(i.role), escape(i.state))).collect();
        let instances = if instances.is_empty() { "–".to_string() } else { instances.join("<br>") };
        let sessions = status.sessions.map_or_else(|| "–".to_string(), |n| n.to_string());
        let error = status.last_error.as_ref().map_or_else(
            || "<span class=\"muted\">–</span>".to_string(),
            |e| format!("{}<br><span class=\"muted\">{}</span>", escape(&e.message), escape(&e.at)),
        );
        let _ = write!(
            html,
            "<tr data-backend=\"{name}\"><td data-field=\"name\">{name}</td><td data-field=\"kind\">{}</td>\
             <td data-field=\"state\">{}</td><td data-field=\"ready\">{ready}</td>\
             <td data-field=\"instances\">{instances}</td><td class=\"num\" data-field=\"sessions\">{sessions}</td>\
             <td class=\"num\" data-field=\"restarts\">{}</td><td class=\"num\" data-field=\"per_minute\">{:.1}</td>\
             <td class=\"num\" data-field=\"calls\">{}</td><td class=\"num\" data-field=\"failed\">{}</td>\
             <td class=\"num\" data-field=\"p50\">{}</td><td class=\"num\" data-field=\"p99\">{}</td>\
             <td class=\"error\" data-field=\"last_error\">{error}</td></tr>",
            escape(status.kind),
            escape(status.state),
            status.restarts,
            summary.per_minute,
            summary.calls,
            summary.errors,
            latency(summary.p50),
            latency(summary.p99),
        );
    }
    html.push_str("</tbody></table><h2>Latest failures</h2>");
    let failures = recent.failures();
    if failures.is_empty() {
        html.push_str("<p id=\"no-failures\" class=\"muted\">None since berth started.</p>");
    } else {
        html.push_str(
            "<table id=\"failures\"><thead><tr><th>When</th><th>Backend</th><th>Method</th><th>Outcome</th>\
             <th>Status</th></tr></thead><tbody>",
        );
        for failure in failures {
            let _ = write!(
                html,
                "<tr class=\"failure\"><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&failure.at),
                escape(&failure.backend),
                escape(failure.method),
                escape(failure.outcome),
                failure.status
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</body></html>");
    html
}

/// The page as a response: HTML, never cached, no scripts, no framing.
pub(crate) fn response(backends: &[std::sync::Arc<Backend>], recent: &Recent) -> Response<ResponseBody> {
    let mut response = Response::new(response_body(render(backends, recent)));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_latencies_are_readable() {
        assert_eq!(escape("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(latency(None), "–");
        assert_eq!(latency(Some(Duration::from_micros(1500))), "1.50 ms");
        assert_eq!(latency(Some(Duration::from_millis(250))), "250 ms");
        assert_eq!(latency(Some(Duration::from_millis(2500))), "2.50 s");
    }

    #[test]
    fn an_empty_berth_renders_a_page_without_scripts() {
        let html = render(&[], &Recent::default());
        assert!(html.starts_with("<!doctype html>") && html.ends_with("</html>"));
        assert!(html.contains("http-equiv=\"refresh\""));
        assert!(html.contains("id=\"no-failures\""));
        assert!(!html.contains("<script"));
    }
}
