//! API tokens: `Authorization: Bearer <token>` for clients and scripts that prefer a bearer
//! header to a password.
//!
//! `berth token create` makes a random 256-bit token, prints it once, and prints the
//! `[[auth.tokens]]` entry that holds only its SHA-256 digest. berth compares the digest of a
//! presented token with every entry's in constant time (no early exit, no lookup keyed by the
//! secret). A token's identity is `token:<name>`, which no Basic user can have (names have no
//! `:`), so sessions, `allow` lists and rate limits tell tokens and users apart.

use std::{sync::Arc, time::SystemTime};

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The prefix of every token berth creates, so that secret scanners can recognise one.
pub(crate) const TOKEN_PREFIX: &str = "berth_";

/// One accepted token.
#[derive(Clone)]
struct Token {
    identity: Arc<str>,
    digest: [u8; 32],
    expires: Option<SystemTime>,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenRefusal {
    /// No entry has its digest.
    Unknown,
    /// The entry of this identity has expired.
    Expired(Arc<str>),
}

/// The tokens berth accepts.
#[derive(Clone, Default)]
pub(crate) struct Tokens {
    tokens: Vec<Token>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tokens.iter().map(|t| &*t.identity)).finish()
    }
}

/// The identity of token `name`.
pub(crate) fn identity(name: &str) -> String {
    format!("token:{name}")
}

/// Whether `name` may name a token: letters, digits, `.`, `_`, `-`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The SHA-256 of `token`, as the configuration writes it (64 lowercase hex digits).
pub(crate) fn digest_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits.
pub(crate) fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// A new random token: the prefix and 256 random bits, base64url.
pub(crate) fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

impl Tokens {
    /// Adds token `name` by its digest, valid until `expires` when given.
    pub(crate) fn add(&mut self, name: &str, digest: [u8; 32], expires: Option<SystemTime>) {
        self.tokens.push(Token { identity: identity(name).into(), digest, expires });
    }

    /// How many tokens there are.
    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there is any token.
    pub(crate) fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether token `name` exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        let wanted = identity(name);
        self.tokens.iter().any(|token| *token.identity == *wanted)
    }

    /// The identity of `presented`, at `now`.
    pub(crate) fn verify(&self, presented: &str, now: SystemTime) -> Result<Arc<str>, TokenRefusal> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&Token> = None;
        for token in &self.tokens {
            // Each comparison is constant-time and every entry is compared: the time depends on
            // the number of tokens, never on how much of a digest matched.
            let equal: Choice = token.digest.ct_eq(&digest);
            if bool::from(equal) {
                found = Some(token);
            }
        }
        let token = found.ok_or(TokenRefusal::Unknown)?;
        match token.expires {
            Some(expires) if now >= expires => Err(TokenRefusal::Expired(Arc::clone(&token.identity))),
            _ => Ok(Arc::clone(&token.identity)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_token_is_known_by_its_digest_and_ends_when_it_expires() {
        let token = generate().unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 43, "{token}");
        assert_ne!(generate().unwrap(), token, "tokens are random");
        let now = SystemTime::now();
        let mut tokens = Tokens::default();
        tokens.add("ci", parse_digest(&digest_hex(&token)).unwrap(), Some(now + Duration::from_secs(60)));
        assert_eq!(tokens.verify(&token, now).as_deref(), Ok("token:ci"));
        assert_eq!(tokens.verify(&format!("{token}x"), now), Err(TokenRefusal::Unknown));
        assert_eq!(tokens.verify("", now), Err(TokenRefusal::Unknown));
        let later = now + Duration::from_secs(61);
        assert_eq!(tokens.verify(&token, later), Err(TokenRefusal::Expired(Arc::from("token:ci"))));
        assert!(tokens.contains("ci") && !tokens.contains("cd"));
    }

    #[test]
    fn digests_are_64_hex_digits() {
        let hex = digest_hex("abc");
        assert_eq!(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(parse_digest(&hex).map(|d| d[0]), Some(0xba));
        for bad in ["", "ab", &hex[1..], &format!("{}g", &hex[1..])] {
            assert!(parse_digest(bad).is_none(), "{bad}");
        }
    }
}
