//! The status page on the admin listener, loaded by a real browser: Debian's Chromium, headless,
//! with an admin's credentials, after real traffic; the test reads the DOM Chromium rendered.
//! Where Chromium is missing the test says so and passes, unless `BERTH_REQUIRE_BROWSER` is set
//! (`scripts/test` installs it and sets it).

use std::process::Command;

use serde_json::json;

use crate::{
    admin::{admin_config, scrape},
    harness::{Berth, PASSWORD, USER},
    raw::RawSession,
};

/// The browser, when there is one.
fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success()));
    if found.is_none() {
        assert!(
            std::env::var_os("BERTH_REQUIRE_BROWSER").is_none(),
            "BERTH_REQUIRE_BROWSER is set but no Chromium runs"
        );
    }
    found
}

/// Chromium's rendering of `url`, as HTML (`--dump-dom`), or a screenshot (`--screenshot`);
/// run off the test's runtime thread, which serves berth meanwhile.
async fn chromium_run(browser: &'static str, url: &str, extra: &[&str]) -> String {
    let (url, extra): (String, Vec<String>) = (url.to_string(), extra.iter().map(|s| s.to_string()).collect());
    tokio::task::spawn_blocking(move || chromium_blocking(browser, &url, &extra)).await.unwrap()
}

fn chromium_blocking(browser: &str, url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("timeout")
        .args(["90", browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text of the cell `field` in the row of `backend` (of the page's HTML or its DOM).
pub(crate) fn cell(dom: &str, backend: &str, field: &str) -> String {
    let row = &dom
        [dom.find(&format!("<tr data-backend=\"{backend}\">")).unwrap_or_else(|| panic!("no row {backend}: {dom}"))..];
    let row = &row[..row.find("</tr>").unwrap()];
    let start = row.find(&format!("data-field=\"{field}\">")).unwrap_or_else(|| panic!("no {field} in {row}"));
    let text = &row[start + field.len() + 14..];
    let text = &text[..text.find("</td>").unwrap()];
    // Tags inside the cell (spans, line breaks) are not its text.
    let mut plain = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => plain.push(c),
            _ => {}
        }
    }
    plain
}

#[tokio::test]
async fn the_status_page_renders_backends_calls_latency_and_failures_in_a_browser() {
    let Some(browser) = chromium() else {
        eprintln!("no Chromium here: the status page was not loaded in a browser");
        return;
    };
    let berth = Berth::start(&admin_config("", "[backends.conformance]\nkind = \"native\"\n")).await;
    let session = RawSession::open(&berth.mcp_url("fx"), json!({})).await;
    for n in 0..5 {
        assert_eq!(session.tool("echo", json!({"text": format!("call {n}")})).await, format!("call {n}"));
    }
    // A JSON-RPC error answer: a failure.
    let failed = session.request(json!(99), "no/such/method", json!({})).await;
    assert!(failed["error"].is_object(), "{failed}");
    // Every POST to fx the metrics counted is a call on the page.
    let text = scrape(&berth).await;
    let posts: f64 = text
        .lines()
        .filter(|line| line.starts_with("berth_mcp_requests_total{backend=\"fx\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(posts >= 7.0, "{text}");

    let url = berth.admin_url("/").replacen("http://", &format!("http://{USER}:{PASSWORD}@"), 1);
    let dom = chromium_run(browser, &url, &["--dump-dom"]).await;
    assert!(dom.contains("<title>berth status</title>"), "{dom}");
    assert_eq!(cell(&dom, "fx", "kind"), "process");
    assert_eq!(cell(&dom, "fx", "state"), "running");
    assert_eq!(cell(&dom, "fx", "ready"), "yes");
    assert_eq!(cell(&dom, "fx", "instances"), "shared ready");
    assert_eq!(cell(&dom, "fx", "sessions"), "1");
    assert_eq!(cell(&dom, "fx", "restarts"), "0");
    assert_eq!(cell(&dom, "fx", "calls").parse::<f64>().unwrap(), posts, "the page counts what the metrics count");
    assert_eq!(cell(&dom, "fx", "failed"), "1");
    assert!(cell(&dom, "fx", "p50").ends_with(" ms"), "{dom}");
    assert!(cell(&dom, "fx", "p99").ends_with(" ms"), "{dom}");
    assert!(cell(&dom, "fx", "per_minute").parse::<f64>().unwrap() > 0.0);
    assert_eq!(cell(&dom, "conformance", "kind"), "native");
    assert_eq!(cell(&dom, "conformance", "calls"), "0");
    assert_eq!(cell(&dom, "conformance", "p50"), "–");
    // The failure is listed.
    let failures = &dom[dom.find("<table id=\"failures\">").expect("a failures table")..];
    let first = &failures[failures.find("<tr class=\"failure\">").unwrap()..];
    let first = &first[..first.find("</tr>").unwrap()];
    assert!(first.contains("<td>fx</td>") && first.contains("<td>other</td>") && first.contains(">error<"), "{first}");
    assert!(!dom.contains("<script"), "no JavaScript");

    // Without credentials the page is not shown.
    let refused = chromium_run(browser, &berth.admin_url("/"), &["--dump-dom"]).await;
    assert!(!refused.contains("data-backend"), "{refused}");

    // BERTH_SCREENSHOT=path also writes what Chromium rendered (docs/status-page.png).
    if let Some(path) = std::env::var_os("BERTH_SCREENSHOT") {
        let path = std::path::PathBuf::from(path);
        chromium_run(browser, &url, &["--window-size=1280,560", &format!("--screenshot={}", path.display())]).await;
        assert!(path.is_file());
    }
}
