//! The README's curl walk-through ("Try it with curl"), run as written against a real berth
//! started as the README's quick start says (no file, the user from the environment): every
//! command of its `console` blocks goes through bash and curl, and what comes back must read
//! as the README shows it, line by line, except what differs each run (dates, session ids).

use std::process::Command;

use crate::{
    cli::{berth, serve},
    harness::repo_root,
};

/// One `$ ` command of the walk-through (continuation lines joined) and the output shown under it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The steps of the README section that starts with `heading`, in order.
fn steps(readme: &str, heading: &str) -> Vec<Step> {
    let start = readme.find(heading).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    let mut continued = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line == "```console";
            continued = false;
            continue;
        }
        if !in_block {
            continue;
        }
        if continued {
            let step = steps.last_mut().expect("a continuation follows a command");
            step.command.push('\n');
            step.command.push_str(line);
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step { command: command.to_owned(), expected: Vec::new() });
        } else {
            steps.last_mut().expect("output follows a command").expected.push(line.to_owned());
        }
        continued = line.ends_with('\\');
    }
    steps
}

/// What differs each run, made the same: the `date` header goes, a session id becomes `<id>`.
fn normalize(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lines
        .iter()
        .map(|line| line.trim_end_matches('\r').to_owned())
        .filter(|line| !line.to_ascii_lowercase().starts_with("date:"))
        .map(|line| match line.split_once(':') {
            Some((name, _)) if name.eq_ignore_ascii_case("mcp-session-id") => format!("{name}: <id>"),
            _ => line,
        })
        .collect();
    while out.last().is_some_and(|line| line.is_empty()) {
        out.pop();
    }
    out
}

/// A README line ending in `…` stands for any line that starts as it does.
fn matches(expected: &str, actual: &str) -> bool {
    match expected.strip_suffix('…') {
        Some(prefix) => actual.starts_with(prefix.trim_end()),
        None => expected == actual,
    }
}

#[tokio::test]
async fn the_readme_curl_walk_through_reads_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let steps = steps(&readme, "## Try it with curl");
    assert!(steps.len() >= 8, "the walk-through has its steps: {steps:#?}");
    assert!(steps.iter().any(|s| s.command.contains("-X DELETE")), "{steps:#?}");

    // The README's quick start: `serve` without a file, the user from the environment.
    let mut command = berth();
    command.arg("serve").env("BERTH_AUTH_USERNAME", "me").env("BERTH_AUTH_PASSWORD", "secret");
    let served = serve(command);
    let dir = tempfile::tempdir().unwrap();

    // One bash runs every command in turn (variables carry over, as in the reader's shell),
    // each output behind a marker line.
    let marker = |n: usize| format!("@@berth-readme-step-{n}@@");
    let mut script = String::from("set -u\n");
    for (n, step) in steps.iter().enumerate() {
        let command = step
            .command
            .replace("127.0.0.1:8080", &served.addr)
            .replace("/tmp/", &format!("{}/", dir.path().display()));
        script.push_str(&format!("printf '\\n%s\\n' '{}'\n{command}\n", marker(n)));
    }
    let output = Command::new("bash").arg("-c").arg(&script).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();

    let mut failures = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let begin = stdout.find(&marker(n)).unwrap() + marker(n).len();
        let rest = &stdout[begin..];
        let end = rest.find("\n@@berth-readme-step-").unwrap_or(rest.len());
        let actual: Vec<String> = rest[..end].lines().skip(1).map(str::to_owned).collect();
        let (expected, actual) = (normalize(&step.expected), normalize(&actual));
        let same = expected.len() == actual.len() && expected.iter().zip(&actual).all(|(e, a)| matches(e, a));
        if !same {
            failures.push(format!(
                "$ {}\n--- README\n{}\n--- berth\n{}",
                step.command,
                expected.join("\n"),
                actual.join("\n")
            ));
        }
    }
    served.stop().await;
    assert!(failures.is_empty(), "the README's walk-through drifted:\n\n{}", failures.join("\n\n"));
}

#[test]
fn the_walk_through_parser_joins_continuations_and_keeps_outputs() {
    let readme = "## Try it with curl\n```console\n$ a \\\n    b\nout 1\n\n$ c\n```\ntext\n```sh\n$ not this\n```\n## Next\n```console\n$ nor this\n```\n";
    let steps = steps(readme, "## Try it with curl");
    assert_eq!(steps.len(), 2, "{steps:#?}");
    assert_eq!(steps[0].command, "a \\\n    b");
    assert_eq!(steps[0].expected, ["out 1", ""]);
    assert_eq!(steps[1].command, "c");
    assert!(matches("{\"tools\":[{\"name\":\"x\", …", "{\"tools\":[{\"name\":\"x\",\"y\":1}]}"));
    assert!(!matches("{\"tools\":[]}", "{\"tools\":[{}]}"));
    assert_eq!(normalize(&["date: x".into(), "Mcp-Session-Id: 12\r".into(), String::new()]), ["Mcp-Session-Id: <id>"]);
}
