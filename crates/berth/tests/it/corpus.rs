//! Hostile input on the wire: every entry of the committed corpus `tests/corpus/hostile.toml`
//! (malformed credentials, paths, methods, heads, bodies and framing, written byte for byte) is
//! sent over real TCP to a real berth, and must get exactly its status, in order for pipelined
//! requests, with no 500 and no hang; then berth must still serve an `initialize`. The property
//! tests in `corpus/props.rs` do the same for random `Authorization` values and paths.
//!
//! Failed logins are throttled per client address, so each entry connects from a loopback
//! address of its own (`127.1.x.y`); entries carrying Alice's right credential all come from
//! one address (`127.0.0.2`), where she is remembered after her first login and spends nothing
//! from her user name's bucket (20 at once), which only the entries guessing her password spend.

mod props;
mod template;
mod wire;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
};

use serde::Deserialize;

use crate::{
    harness::{Berth, fixture_config},
    requests::open_session,
};

/// The corpus file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    entry: Vec<Entry>,
}

/// One hostile exchange.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// What it is, unique in the file.
    name: String,
    /// The request, in the notation of `corpus/template.rs`.
    request: Option<String>,
    /// Several requests, written in one go (pipelined), each answered in order.
    requests: Option<Vec<String>>,
    /// The status of the one answer.
    status: Option<u16>,
    /// The statuses of the answers, in order (as many answers are read; fewer is a failure).
    statuses: Option<Vec<u16>>,
    /// The error slug of the last answer: `error`, or `error.data.error` of a JSON-RPC one.
    error: Option<String>,
}

impl Entry {
    fn requests(&self) -> Vec<&str> {
        match (&self.request, &self.requests) {
            (Some(one), None) => vec![one.as_str()],
            (None, Some(many)) => many.iter().map(String::as_str).collect(),
            _ => panic!("{}: give exactly one of request and requests", self.name),
        }
    }

    fn statuses(&self) -> Vec<u16> {
        match (self.status, &self.statuses) {
            (Some(one), None) => vec![one],
            (None, Some(many)) => many.clone(),
            _ => panic!("{}: give exactly one of status and statuses", self.name),
        }
    }
}

/// The corpus, parsed.
fn corpus() -> Vec<Entry> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/hostile.toml");
    let text = std::fs::read_to_string(path).expect("the corpus file");
    let corpus: Corpus =
        toml::from_str(&text).unwrap_or_else(|error| panic!("the corpus does not parse: {}", error.message()));
    let mut names = std::collections::HashSet::new();
    for entry in &corpus.entry {
        assert!(names.insert(&entry.name), "entry name {} is given twice", entry.name);
    }
    corpus.entry
}

/// The address Alice's right credential comes from.
const DESK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Sends one entry and says what went wrong, if anything.
async fn run(berth: SocketAddr, from: Ipv4Addr, entry: &Entry) -> (Vec<u16>, Option<String>) {
    let requests = entry.requests();
    let bytes: Vec<u8> = requests.iter().flat_map(|request| template::expand(request)).collect();
    let expected = entry.statuses();
    // One answer is read per expected status; whether each is to a HEAD (no body) is known
    // only when each request is written apart.
    let heads: Vec<bool> =
        (0..expected.len()).map(|n| requests.get(n).is_some_and(|request| request.starts_with("HEAD "))).collect();
    let exchanged = wire::exchange(berth, from, bytes, &heads).await;
    let got: Vec<u16> = exchanged.answers.iter().map(|answer| answer.status).collect();
    let mut problems = Vec::new();
    if got != expected {
        problems.push(format!("expected {expected:?}, got {got:?}"));
    }
    if let Some(ending) = exchanged.ending {
        problems.push(ending);
    }
    if let (Some(slug), Some(last)) = (&entry.error, exchanged.answers.last())
        && last.slug().as_deref() != Some(slug.as_str())
    {
        problems.push(format!("expected error {slug}, got {:?}", last.slug()));
    }
    if !problems.is_empty()
        && let Some(first) = exchanged.answers.first()
    {
        let body = String::from_utf8_lossy(&first.body);
        problems.push(format!("first body: {}", body.chars().take(160).collect::<String>()));
    }
    (got, (!problems.is_empty()).then(|| problems.join("; ")))
}

#[tokio::test]
async fn every_corpus_entry_gets_exactly_its_status() {
    let entries = corpus();
    assert!(entries.len() >= 100, "the corpus has {} entries", entries.len());
    let berth = Berth::start(&fixture_config("")).await;
    let mut by_status = BTreeMap::<u16, usize>::new();
    let mut failures = String::new();
    for (n, entry) in entries.iter().enumerate() {
        let from = if entry.requests().iter().any(|request| request.contains("${alice}")) {
            DESK
        } else {
            wire::source(1, u32::try_from(n).unwrap())
        };
        let (got, problem) = run(berth.addr, from, entry).await;
        for status in got {
            *by_status.entry(status).or_default() += 1;
        }
        if let Some(problem) = problem {
            writeln!(failures, "  {:<40} {problem}", entry.name).unwrap();
        }
    }
    let answers: usize = by_status.values().sum();
    eprintln!("corpus: {} entries, {answers} answers, by status: {by_status:?}", entries.len());
    assert!(failures.is_empty(), "corpus entries that got the wrong answer:\n{failures}");
    assert!(!by_status.contains_key(&500), "no entry may get a 500");
    // berth still serves.
    let session = open_session(&berth.mcp_url("fx")).await;
    assert!(!session.is_empty());
    berth.stop().await;
}
