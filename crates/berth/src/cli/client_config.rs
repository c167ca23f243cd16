//! `berth client-config`: the exact snippet each MCP client needs to reach a berth backend.
//!
//! Every client sends the same header, `Authorization: Basic <base64 of user:password>`; they
//! differ in where it goes and whether the secret can stay out of the file:
//!
//! | client | form | secret |
//! | --- | --- | --- |
//! | Claude Desktop | `mcp-remote` over stdio (it has no remote transport of its own) | `env` of the entry, expanded by mcp-remote |
//! | Claude Code | `claude mcp add --transport http`, or `.mcp.json` | `${BERTH_AUTH}` from the environment |
//! | Cursor | `url` + `headers` | `${env:BERTH_AUTH}` |
//! | VS Code | `servers` with `type: "http"` | an `inputs` password prompt |
//! | MetaMCP | `type: "streamable_http"`, `url`, `headers` | in the file (no interpolation) |
//! | mcp-remote | a command line | `BERTH_AUTH` in the environment |
//!
//! The snippet goes to standard output, so that it can be redirected into a file; notes for the
//! reader (what to set `BERTH_AUTH` to) go to standard error.
//!
//! mcp-remote 0.15.1 refuses a plain `http:` URL unless its host is `localhost` or `127.0.0.1`
//! or it is given `--allow-http` (its `parseCommandLineArgs`): the snippets add the flag for
//! every other `http:` URL. A URL whose path does not end in `/mcp` is refused (exit 64): every
//! berth endpoint is `/<backend>/mcp`, or `/mcp` on `<backend>.<base_domain>`, so such a URL
//! would only give the client 404s.

use base64::Engine;
use serde_json::{Value, json};

/// The mcp-remote release the snippets pin (the one `tools/package.json` tests).
pub(crate) const MCP_REMOTE: &str = "mcp-remote@0.15.1";

/// The environment variable that carries the whole header value, `Basic <base64>`.
pub(crate) const AUTH_VARIABLE: &str = "BERTH_AUTH";

/// The clients berth writes configuration for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Client {
    /// Claude Desktop (`claude_desktop_config.json`), through mcp-remote.
    ClaudeDesktop,
    /// Claude Code: the `claude mcp add` command, then the `.mcp.json` form.
    ClaudeCode,
    /// Cursor (`~/.cursor/mcp.json` or `.cursor/mcp.json`).
    Cursor,
    /// VS Code (`.vscode/mcp.json`).
    Vscode,
    /// MetaMCP (import JSON).
    Metamcp,
    /// mcp-remote on a command line.
    McpRemote,
}

/// The `Authorization` value for a user and password.
pub(crate) fn basic_value(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Whether mcp-remote needs `--allow-http` for `url`: a plain `http:` URL whose host is not
/// `localhost` or `127.0.0.1`, the only two it exempts (host names compare case-insensitively,
/// as its WHATWG `URL` lowercases them; `[::1]` and the rest of 127.0.0.0/8 are not exempt).
pub(crate) fn needs_allow_http(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else { return false };
    uri.scheme_str().is_some_and(|scheme| scheme.eq_ignore_ascii_case("http"))
        && !uri.host().is_some_and(|host| host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1")
}

/// Whether the path of `url` is one berth serves an MCP endpoint at: it ends in `/mcp`
/// (a trailing `/` is allowed, as berth's router allows it).
pub(crate) fn is_mcp_path(url: &str) -> bool {
    url.parse::<http::Uri>().is_ok_and(|uri| {
        let path = uri.path();
        path.strip_suffix('/').unwrap_or(path).ends_with("/mcp")
    })
}

/// The server's name in the snippet: the backend named by the URL, else `berth`.
pub(crate) fn default_name(url: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else { return "berth".into() };
    let path = uri.path().trim_end_matches('/');
    if let Some(name) =
        path.strip_suffix("/mcp").and_then(|rest| rest.strip_prefix('/')).filter(|n| !n.contains('/') && !n.is_empty())
    {
        return name.to_string();
    }
    match uri.host() {
        Some(host) if path == "/mcp" && host.contains('.') && host.parse::<std::net::IpAddr>().is_err() => {
            host.split('.').next().unwrap_or("berth").to_string()
        }
        _ => "berth".into(),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("JSON values always serialize")
}

/// Single-quotes a word for POSIX shells.
fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:@=".contains(&b)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The snippet for `client`, and the note for the reader. `credential` is the header value when
/// the user is known; clients that cannot interpolate get a placeholder without it.
pub(crate) fn render(client: Client, name: &str, url: &str, credential: Option<&str>) -> (String, String) {
    let placeholder = "Basic <base64 of user:password>";
    let value = credential.unwrap_or(placeholder);
    let export = match credential {
        Some(value) => format!("export {AUTH_VARIABLE}={}", shell_quote(value)),
        None => format!("export {AUTH_VARIABLE}=\"Basic $(printf '%s' 'USER:PASSWORD' | base64)\""),
    };
    let env_note =
        format!("Set {AUTH_VARIABLE} in the client's environment (it holds the whole header value):\n  {export}");
    match client {
        Client::ClaudeDesktop => {
            let mut args = vec![
                "-y".to_string(),
                MCP_REMOTE.to_string(),
                url.to_string(),
                "--transport".into(),
                "http-only".into(),
                "--header".into(),
                format!("Authorization:${{{AUTH_VARIABLE}}}"),
            ];
            if needs_allow_http(url) {
                args.push("--allow-http".into());
            }
            let snippet = json!({"mcpServers": {name: {
                "command": "npx",
                "args": args,
                "env": {AUTH_VARIABLE: value},
            }}});
            let note = "Merge into claude_desktop_config.json (Settings > Developer > Edit Config), then restart Claude Desktop. \
                        The credential sits in `env`; mcp-remote expands ${BERTH_AUTH} itself.";
            (pretty(&snippet), note.to_string())
        }
        Client::ClaudeCode => {
            let command = format!(
                "claude mcp add --transport http {} {} --header \"Authorization: ${{{AUTH_VARIABLE}}}\"",
                shell_quote(name),
                shell_quote(url)
            );
            let file = json!({"mcpServers": {name: {
                "type": "http",
                "url": url,
                "headers": {"Authorization": format!("${{{AUTH_VARIABLE}}}")},
            }}});
            let note = format!(
                "Run the command (your shell expands ${AUTH_VARIABLE}), or put the JSON in a project's .mcp.json \
                 (Claude Code expands ${{{AUTH_VARIABLE}}} when it starts).\n{env_note}"
            );
            (format!("{command}\n\n{}", pretty(&file)), note)
        }
        Client::Cursor => {
            let snippet = json!({"mcpServers": {name: {
                "url": url,
                "headers": {"Authorization": format!("${{env:{AUTH_VARIABLE}}}")},
            }}});
            (pretty(&snippet), format!("Merge into ~/.cursor/mcp.json or .cursor/mcp.json.\n{env_note}"))
        }
        Client::Vscode => {
            let input = format!("{name}-authorization");
            let snippet = json!({
                "inputs": [{
                    "type": "promptString",
                    "id": input,
                    "description": format!("Authorization header for {name} (Basic <base64 of user:password>)"),
                    "password": true,
                }],
                "servers": {name: {
                    "type": "http",
                    "url": url,
                    "headers": {"Authorization": format!("${{input:{input}}}")},
                }},
            });
            let note = format!(
                "Merge into .vscode/mcp.json (or the user settings' \"mcp\" section). VS Code asks for the value once and stores it \
                 encrypted; paste: {value}"
            );
            (pretty(&snippet), note)
        }
        Client::Metamcp => {
            let snippet = json!({"mcpServers": {name: {
                "type": "streamable_http",
                "url": url,
                "headers": {"Authorization": value},
                "bearerToken": "",
            }}});
            let note = "Import in MetaMCP (MCP Servers > Import JSON). MetaMCP does not expand variables, so the credential is in \
                        the snippet: keep it out of version control. Leave bearerToken empty: berth speaks Basic, not Bearer.";
            (pretty(&snippet), note.to_string())
        }
        Client::McpRemote => {
            let allow_http = if needs_allow_http(url) { " --allow-http" } else { "" };
            let command = format!(
                "npx -y {MCP_REMOTE} {} --transport http-only --header 'Authorization:${{{AUTH_VARIABLE}}}'{allow_http}",
                shell_quote(url)
            );
            (command, format!("mcp-remote expands ${{{AUTH_VARIABLE}}} from its environment.\n{env_note}"))
        }
    }
}

/// Prints the snippet; with `user`, reads the password from standard input for the credential.
pub(super) fn run(client: Client, url: &str, user: Option<&str>, name: Option<&str>) -> std::process::ExitCode {
    if url.parse::<http::Uri>().ok().and_then(|uri| uri.scheme_str().map(str::to_owned)).is_none() {
        eprintln!("berth: --url `{url}` is not an absolute URL such as https://fs.mcp.example.com/mcp");
        return std::process::ExitCode::from(super::EXIT_USAGE);
    }
    if !is_mcp_path(url) {
        eprintln!(
            "berth: --url `{url}` does not end in /mcp: berth serves a backend at https://HOST/<backend>/mcp, \
             or at https://<backend>.<base_domain>/mcp"
        );
        return std::process::ExitCode::from(super::EXIT_USAGE);
    }
    let credential = match user {
        None => None,
        Some(user) => match super::read_password(&format!("Password of {user} (read from standard input):")) {
            Ok(password) => Some(basic_value(user, &password)),
            Err(code) => return code,
        },
    };
    let name = name.map_or_else(|| default_name(url), str::to_owned);
    let (snippet, note) = render(client, &name, url, credential.as_deref());
    println!("{snippet}");
    eprintln!("{note}");
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_url() {
        let table = [
            ("https://fs.mcp.example.com/mcp", "fs"),
            ("https://mcp.example.com/git/mcp", "git"),
            ("http://127.0.0.1:8080/conformance/mcp/", "conformance"),
            ("http://127.0.0.1:8080/mcp", "berth"),
            ("not a url", "berth"),
        ];
        for (url, name) in table {
            assert_eq!(default_name(url), name, "{url}");
        }
    }

    #[test]
    fn allow_http_and_mcp_paths() {
        let table = [
            ("https://fs.mcp.example.com/mcp", false, true),
            ("http://127.0.0.1:8080/fs/mcp", false, true),
            ("http://LOCALHOST/fs/mcp/", false, true),
            ("HTTP://mcp.internal/fs/mcp", true, true),
            ("http://[::1]:8080/fs/mcp", true, true),
            ("http://127.0.0.2/fs/mcp", true, true),
            ("https://mcp.example.com/fs", false, false),
            ("https://mcp.example.com", false, false),
            ("https://mcp.example.com/fs/mcp/x", false, false),
            ("https://mcp.example.com/fs/mcp?x=1", false, true),
        ];
        for (url, allow_http, mcp) in table {
            assert_eq!(needs_allow_http(url), allow_http, "{url}");
            assert_eq!(is_mcp_path(url), mcp, "{url}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("https://a.example/mcp"), "https://a.example/mcp");
        assert_eq!(shell_quote("Basic YQ=="), "'Basic YQ=='");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
