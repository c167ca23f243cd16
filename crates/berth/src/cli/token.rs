//! `berth token create`: a new API token, printed once, and the `[[auth.tokens]]` entry that
//! holds only its SHA-256 digest.

use std::process::ExitCode;

use crate::{
    auth::tokens::{self, digest_hex, generate},
    config::parse_expiry,
};

use super::EXIT_USAGE;

/// Prints a new token on the first line of standard output, then, after a blank line, its
/// configuration entry.
pub(crate) fn create(name: &str, groups: &[String], expires: Option<&str>) -> ExitCode {
    if !tokens::valid_name(name) {
        eprintln!("berth: --name `{name}`: a token name is letters, digits, `.`, `_`, `-`");
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(bad) = groups.iter().find(|group| group.is_empty() || group.contains('"')) {
        eprintln!("berth: --groups: `{bad}` is not a group name");
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(Err(message)) = expires.map(parse_expiry) {
        eprintln!("berth: --expires: {message}");
        return ExitCode::from(EXIT_USAGE);
    }
    let token = match generate() {
        Ok(token) => token,
        Err(error) => {
            eprintln!("berth: no randomness for a token: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", entry(&token, name, groups, expires));
    ExitCode::SUCCESS
}

/// The token, a blank line, and the TOML entry to add to the configuration.
fn entry(token: &str, name: &str, groups: &[String], expires: Option<&str>) -> String {
    let mut out = format!(
        "{token}\n\n# API token `{name}`: the line above is the token, shown only now; \
         clients send `Authorization: Bearer <token>`.\n[[auth.tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\n",
        digest_hex(token)
    );
    if !groups.is_empty() {
        let list: Vec<String> = groups.iter().map(|group| format!("\"{group}\"")).collect();
        out.push_str(&format!("groups = [{}]\n", list.join(", ")));
    }
    if let Some(expires) = expires {
        out.push_str(&format!("expires = \"{expires}\"\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_parses_as_the_configuration_of_its_token() {
        let token = generate().unwrap();
        let printed = entry(&token, "ci", &["dev".into(), "ops".into()], Some("2027-01-01"));
        let (first, rest) = printed.split_once("\n\n").unwrap();
        assert_eq!(first, token);
        let config = crate::Config::parse(rest, None).unwrap();
        let now = std::time::SystemTime::now();
        assert_eq!(config.validated.tokens.verify(&token, now).as_deref(), Ok("token:ci"));
    }
}
