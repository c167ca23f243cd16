//! Value types of the configuration file: durations, `${ENV}`-interpolated strings.

use std::{fmt, time::Duration};

use serde::{Deserialize, Deserializer, de};

use crate::secret::Secret;

/// A duration written as `"500ms"`, `"10s"`, `"5m"`, `"1h"` or a whole number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Parses the textual form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: u64 =
            number.parse().map_err(|_| format!("`{text}` is not a duration such as \"500ms\", \"10s\", \"5m\""))?;
        let duration = match unit.trim() {
            "ms" => Duration::from_millis(value),
            "" | "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value * 60),
            "h" => Duration::from_secs(value * 3600),
            other => return Err(format!("unknown duration unit `{other}` (use ms, s, m or h)")),
        };
        Ok(Self(duration))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"10s\" or a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(|secs| ConfigDuration(Duration::from_secs(secs)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ConfigDuration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Expands `${NAME}` references to environment variables; `$$` stands for a literal `$`.
///
/// A reference to a variable that is not set is an error, so that a typo in a secret's name
/// stops berth at start-up rather than letting it run with an empty password.
pub(super) fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
            let name = &body[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{name}}}` is not a valid environment variable reference"));
            }
            let value = lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A string in which `${ENV}` references were expanded while the file was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvString(pub String);

impl std::ops::Deref for EnvString {
    type Target = String;

    fn deref(&self) -> &String {
        &self.0
    }
}

impl fmt::Display for EnvString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        interpolate(&raw, env_lookup).map(EnvString).map_err(de::Error::custom)
    }
}

/// A secret in which `${ENV}` references were expanded while the file was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSecret(pub Secret);

impl<'de> Deserialize<'de> for EnvSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        interpolate(&raw, env_lookup).map(|value| EnvSecret(Secret::new(value))).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table = [
            ("500ms", Ok(Duration::from_millis(500))),
            ("10s", Ok(Duration::from_secs(10))),
            ("10", Ok(Duration::from_secs(10))),
            ("5m", Ok(Duration::from_secs(300))),
            ("2h", Ok(Duration::from_secs(7200))),
            ("5 days", Err(())),
            ("s", Err(())),
        ];
        for (text, expected) in table {
            assert_eq!(ConfigDuration::parse(text).map(|d| d.0).map_err(|_| ()), expected, "{text}");
        }
    }

    #[test]
    fn interpolation() {
        let lookup = |name: &str| (name == "PW").then(|| "s3cret".to_string());
        let table = [
            ("plain", Ok("plain")),
            ("${PW}", Ok("s3cret")),
            ("a-${PW}-b", Ok("a-s3cret-b")),
            ("cost $$5", Ok("cost $5")),
            ("lone $ sign", Ok("lone $ sign")),
            ("${MISSING}", Err("environment variable `MISSING` is not set")),
            ("${PW", Err("unclosed `${` in `${PW`")),
            ("${bad-name}", Err("`${bad-name}` is not a valid environment variable reference")),
        ];
        for (text, expected) in table {
            let got = interpolate(text, lookup);
            assert_eq!(got.as_deref().map_err(String::as_str), expected, "{text}");
        }
    }
}
