//! Value types of the configuration file: durations, listen addresses, `${ENV}`-interpolated
//! strings.

use std::{fmt, net::SocketAddr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::{allow_ips::AllowIps, ip_block::IpBlock, secret::Secret};

/// The longest duration accepted, 100 years (of 365 days): beyond it `Instant::now() + d`
/// overflows and panics, and nothing berth waits for is meant to take that long.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

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
        // A product that overflows u64 is far beyond the bound, so it gets the same answer.
        let duration = match unit.trim() {
            "ms" => Some(Duration::from_millis(value)),
            "" | "s" => Some(Duration::from_secs(value)),
            "m" => value.checked_mul(60).map(Duration::from_secs),
            "h" => value.checked_mul(3600).map(Duration::from_secs),
            other => return Err(format!("unknown duration unit `{other}` (use ms, s, m or h)")),
        };
        Self::bounded(duration, &format!("`{text}`"))
    }

    /// Accepts `duration` if it is at most [`MAX_DURATION`]; `what` names the written value in
    /// the error.
    fn bounded(duration: Option<Duration>, what: &str) -> Result<Self, String> {
        duration
            .filter(|duration| *duration <= MAX_DURATION)
            .map(Self)
            .ok_or_else(|| format!("{what} is longer than 100 years, the longest duration berth accepts"))
    }
}

/// Written back as the file would say it: `"500ms"`, `"10s"`, `"5m"`, `"1h"`.
impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (secs, millis) = (self.0.as_secs(), self.0.subsec_millis());
        let text = match (secs, millis) {
            (_, 0) if secs > 0 && secs % 3600 == 0 => format!("{}h", secs / 3600),
            (_, 0) if secs > 0 && secs % 60 == 0 => format!("{}m", secs / 60),
            (_, 0) => format!("{secs}s"),
            _ => format!("{}ms", self.0.as_millis()),
        };
        serializer.serialize_str(&text)
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
                let secs = u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))?;
                ConfigDuration::bounded(Some(Duration::from_secs(secs)), &format!("{v} seconds")).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ConfigDuration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Parses a listen address, `HOST:PORT` with an IP address for the host; the error shows that
/// form, and for a bare port or a host name the address to write instead.
pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.trim().parse::<SocketAddr>() {
        return Ok(address);
    }
    let text = text.trim();
    let port = text.strip_prefix(':').unwrap_or(text);
    if let Ok(port) = port.parse::<u16>() {
        return Err(format!(
            "`{text}` has no host: write HOST:PORT, \"0.0.0.0:{port}\" to listen on every interface or \
             \"127.0.0.1:{port}\" for this machine only"
        ));
    }
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        let example = SocketAddr::new(ip, 8080);
        return Err(format!("`{text}` has no port: write HOST:PORT, such as \"{example}\""));
    }
    if let Some((host, port)) = text.rsplit_once(':')
        && let Ok(port) = port.parse::<u16>()
    {
        let loopback = host.eq_ignore_ascii_case("localhost");
        let suggestion =
            if loopback { format!("\"127.0.0.1:{port}\"") } else { format!("\"0.0.0.0:{port}\" (every interface)") };
        return Err(format!(
            "`{text}` names a host: write HOST:PORT with an IP address for the host, such as {suggestion}"
        ));
    }
    Err(format!("`{text}` is not HOST:PORT, such as \"0.0.0.0:8080\", \"127.0.0.1:8080\" or \"[::]:8080\""))
}

/// Deserializes `server.listen` through [`parse_listen`].
pub(super) fn listen_address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_listen(&text).map_err(|message| de::Error::custom(format!("server.listen: {message}")))
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

/// The value with its `${ENV}` references expanded.
impl Serialize for EnvString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// The text that stands for a secret wherever the configuration is shown.
pub(crate) const REDACTED: &str = "[redacted]";

/// A secret is never shown: [`REDACTED`] stands for it.
impl Serialize for EnvSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// For a value that must not be shown (a password hash, a token's digest): [`REDACTED`] when
/// set.
pub(crate) fn redacted<T: IsSet, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_set() { serializer.serialize_str(REDACTED) } else { serializer.serialize_none() }
}

/// Whether a redacted field has a value to hide.
pub(crate) trait IsSet {
    /// Whether there is a value.
    fn is_set(&self) -> bool;
}

impl<T> IsSet for Option<T> {
    fn is_set(&self) -> bool {
        self.is_some()
    }
}

impl IsSet for String {
    fn is_set(&self) -> bool {
        true
    }
}

/// For maps whose values may be secrets (a server's environment): the names, never the values.
pub(crate) fn redacted_values<K: Serialize, V, S: Serializer>(
    map: &Option<std::collections::BTreeMap<K, V>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match map {
        None => serializer.serialize_none(),
        Some(map) => serializer.collect_map(map.keys().map(|key| (key, REDACTED))),
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

/// An `allow_ips` list: addresses or CIDR blocks, at least one (an empty list would allow
/// nobody, which is never what was meant).
pub(crate) fn allow_list<'a>(entries: impl Iterator<Item = &'a str>) -> Result<AllowIps, String> {
    let blocks = entries.map(IpBlock::parse).collect::<Result<Vec<_>, _>>()?;
    if blocks.is_empty() {
        return Err("an empty list allows no client at all: remove the key to allow every address".into());
    }
    Ok(AllowIps::new(blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table: &[(&str, Result<Duration, &str>)] = &[
            ("500ms", Ok(Duration::from_millis(500))),
            ("10s", Ok(Duration::from_secs(10))),
            ("10", Ok(Duration::from_secs(10))),
            ("5m", Ok(Duration::from_secs(300))),
            ("2h", Ok(Duration::from_secs(7200))),
            ("5 days", Err("unknown duration unit")),
            ("s", Err("is not a duration")),
            ("-5s", Err("is not a duration")),
            ("18446744073709551616s", Err("is not a duration")),
            // The longest duration accepted, in each unit, and one more.
            ("876000h", Ok(MAX_DURATION)),
            ("876001h", Err("longer than 100 years")),
            ("52560000m", Ok(MAX_DURATION)),
            ("52560001m", Err("longer than 100 years")),
            ("3153600000", Ok(MAX_DURATION)),
            ("3153600001s", Err("longer than 100 years")),
            ("3153600000000ms", Ok(MAX_DURATION)),
            ("18446744073709551615ms", Err("longer than 100 years")),
            // Fits in a Duration, but `Instant::now() + timeout` would overflow and panic.
            ("99999999999h", Err("longer than 100 years")),
            // `value * 3600` and `value * 60` overflow u64: a panic in debug builds, a wrapped
            // (short) duration in release.
            ("5124095576030432h", Err("longer than 100 years")),
            ("307445734561825861m", Err("longer than 100 years")),
        ];
        for (text, expected) in table {
            match (ConfigDuration::parse(text).map(|d| d.0), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{text:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{text:?} gave {got}"),
                (got, want) => panic!("{text:?} gave {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn whole_seconds_are_bounded_too() {
        #[derive(Debug, Deserialize, Serialize)]
        struct Table {
            #[allow(dead_code)]
            d: ConfigDuration,
        }
        let table = [
            ("d = 10", None),
            ("d = 3153600000", None),
            ("d = 3153600001", Some("longer than 100 years")),
            ("d = 9223372036854775807", Some("longer than 100 years")),
            ("d = -1", Some("cannot be negative")),
        ];
        for (text, expected) in table {
            let got = toml::from_str::<Table>(text).err().map(|error| error.message().to_string());
            match (got, expected) {
                (None, None) => {}
                (Some(got), Some(want)) => assert!(got.contains(want), "{text:?} gave {got}"),
                (got, want) => panic!("{text:?} gave {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn listen_addresses() {
        let table: &[(&str, Result<&str, &[&str]>)] = &[
            ("0.0.0.0:8080", Ok("0.0.0.0:8080")),
            (" 127.0.0.1:9 ", Ok("127.0.0.1:9")),
            ("[::]:8080", Ok("[::]:8080")),
            ("8080", Err(&["HOST:PORT", "\"0.0.0.0:8080\"", "\"127.0.0.1:8080\""])),
            (":8080", Err(&["HOST:PORT", "\"0.0.0.0:8080\""])),
            ("localhost:8080", Err(&["HOST:PORT", "\"127.0.0.1:8080\""])),
            ("mcp.example.com:443", Err(&["HOST:PORT", "\"0.0.0.0:443\""])),
            ("0.0.0.0", Err(&["HOST:PORT", "\"0.0.0.0:8080\""])),
            ("0.0.0.0:99999", Err(&["HOST:PORT"])),
        ];
        for (text, expected) in table {
            match (parse_listen(text), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got.to_string(), *want, "{text:?}"),
                (Err(got), Err(needles)) => {
                    for needle in *needles {
                        assert!(got.contains(needle), "{text:?} gave {got}");
                    }
                }
                (got, want) => panic!("{text:?} gave {got:?}, expected {want:?}"),
            }
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
