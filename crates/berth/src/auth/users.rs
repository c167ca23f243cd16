//! The user store: who may log in, and the cache that keeps bcrypt off the hot path.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tokio::sync::Semaphore;

use super::bounded::Bounded;
use crate::secret::Secret;

/// A SHA-256 digest; credentials are compared as digests so that their length never shows.
type Digest32 = [u8; 32];

fn sha256(parts: &[&[u8]]) -> Digest32 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// An error in a users file or user entry.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UsersError {
    /// The users file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of the users file is not `name:bcrypt-hash`.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A hash given in the configuration is not a bcrypt hash.
    #[error("user `{0}`: password_hash is not a bcrypt hash ($2a$, $2b$ or $2y$)")]
    NotBcrypt(String),
}

/// How a user's password is checked.
#[derive(Clone)]
enum Verifier {
    /// The SHA-256 of a clear-text password (from the environment or the config).
    Plain(Digest32),
    /// A bcrypt hash (from an htpasswd file or the config).
    Bcrypt(Arc<str>),
}

#[derive(Clone)]
struct User {
    name: Arc<str>,
    name_digest: Digest32,
    verifier: Verifier,
}

/// A bcrypt hash of a random password at cost 10, verified when no user matches, so that a
/// wrong user name costs as much time as a wrong password and names cannot be probed by timing.
/// Users with another cost get a dummy of their cost (see [`dummy_hash`]).
const DUMMY_BCRYPT: &str = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";

/// The cost factor of a bcrypt hash (`$2b$12$...` → 12).
fn bcrypt_cost(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

/// The hash verified for unknown user names: of the highest cost among the users' hashes, so
/// that an unknown name takes as long as a known one with a wrong password (a dummy of a lower
/// cost would answer measurably faster, and tell names apart).
fn dummy_hash(users: &[User]) -> Arc<str> {
    let cost = users
        .iter()
        .filter_map(|user| match &user.verifier {
            Verifier::Bcrypt(hash) => bcrypt_cost(hash),
            Verifier::Plain(_) => None,
        })
        .max();
    match cost {
        None | Some(10) => DUMMY_BCRYPT.into(),
        Some(cost) => {
            let random = uuid::Uuid::new_v4().simple().to_string();
            bcrypt::hash(random, cost).map_or_else(|_| DUMMY_BCRYPT.into(), Arc::from)
        }
    }
}

/// The users berth accepts and the cache of credentials already verified.
pub(crate) struct Users {
    users: Vec<User>,
    has_bcrypt: bool,
    /// The hash verified when no bcrypt user matches the name.
    dummy: Arc<str>,
    cache: Mutex<Bounded<Digest32, Arc<str>>>,
    /// Bounds the bcrypt verifications running at once, so that a flood of wrong passwords
    /// cannot take every core.
    bcrypt_slots: Semaphore,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.users.iter().map(|u| &*u.name).collect();
        f.debug_struct("Users").field("names", &names).finish_non_exhaustive()
    }
}

/// A builder collecting users from the environment, the config and htpasswd files.
#[derive(Default)]
pub(crate) struct UsersBuilder {
    users: Vec<User>,
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|prefix| hash.starts_with(prefix)) && bcrypt_parts_ok(hash)
}

fn bcrypt_parts_ok(hash: &str) -> bool {
    hash.len() == 60
}

impl UsersBuilder {
    /// Adds a user with a clear-text password.
    pub(crate) fn plain(mut self, name: &str, password: &Secret) -> Self {
        self.users.push(User {
            name: name.into(),
            name_digest: sha256(&[name.as_bytes()]),
            verifier: Verifier::Plain(sha256(&[password.expose().as_bytes()])),
        });
        self
    }

    /// Adds a user with a bcrypt hash.
    pub(crate) fn bcrypt(mut self, name: &str, hash: &str) -> Result<Self, UsersError> {
        if !is_bcrypt(hash) {
            return Err(UsersError::NotBcrypt(name.to_string()));
        }
        self.users.push(User {
            name: name.into(),
            name_digest: sha256(&[name.as_bytes()]),
            verifier: Verifier::Bcrypt(hash.into()),
        });
        Ok(self)
    }

    /// Adds every user of an htpasswd file (bcrypt lines only, as `htpasswd -B` writes them).
    pub(crate) fn htpasswd_file(self, path: &Path) -> Result<Self, UsersError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Io { path: display.clone(), source })?;
        self.htpasswd(&text, &display)
    }

    /// Adds every user of htpasswd text; `origin` names it in errors.
    pub(crate) fn htpasswd(mut self, text: &str, origin: &str) -> Result<Self, UsersError> {
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |message: &str| UsersError::Line {
                path: origin.to_string(),
                line: index + 1,
                message: message.to_string(),
            };
            let (name, hash) = line.split_once(':').ok_or_else(|| error("expected `name:hash`"))?;
            if name.is_empty() {
                return Err(error("empty user name"));
            }
            if !is_bcrypt(hash) {
                return Err(error(
                    "only bcrypt hashes are supported (create them with `berth hash-password` or `htpasswd -B`)",
                ));
            }
            self = self.bcrypt(name, hash).map_err(|_| error("not a bcrypt hash"))?;
        }
        Ok(self)
    }

    /// Whether no user was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Finishes the store with a cache of `cache_size` verified credentials.
    pub(crate) fn build(self, cache_size: usize) -> Users {
        let has_bcrypt = self.users.iter().any(|u| matches!(u.verifier, Verifier::Bcrypt(_)));
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        Users {
            dummy: dummy_hash(&self.users),
            users: self.users,
            has_bcrypt,
            cache: Mutex::new(Bounded::new(cache_size)),
            bcrypt_slots: Semaphore::new(slots),
        }
    }
}

impl Users {
    /// A store of the users named in `names` only, with the same hashes, dummy hash and cache
    /// size: the admin listener's. Everyone else is refused as an unknown name is, in the same
    /// time.
    pub(crate) fn restricted_to(&self, names: &std::collections::HashSet<String>) -> Users {
        let users: Vec<User> = self.users.iter().filter(|u| names.contains(&*u.name)).cloned().collect();
        let capacity = self.cache.lock().expect("cache lock").capacity();
        Users {
            has_bcrypt: self.has_bcrypt,
            dummy: Arc::clone(&self.dummy),
            users,
            cache: Mutex::new(Bounded::new(capacity)),
            bcrypt_slots: Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
        }
    }

    /// Whether a user of that name exists.
    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether a user of that name exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.users.iter().any(|u| &*u.name == name)
    }

    /// Starts a store.
    pub(crate) fn builder() -> UsersBuilder {
        UsersBuilder::default()
    }

    /// Checks a user name and password; answers the user's name when they match.
    ///
    /// Every comparison is made in constant time over SHA-256 digests, and every user is
    /// compared (no early exit), so neither the content nor the length of a credential, nor
    /// the position of a user in the list, shows in the time taken.
    pub(crate) async fn verify(&self, name: &str, password: &str) -> Option<Arc<str>> {
        let key = sha256(&[name.as_bytes(), b":", password.as_bytes()]);
        if let Some(hit) = self.cache.lock().expect("cache lock").get(&key) {
            return Some(hit);
        }
        let name_digest = sha256(&[name.as_bytes()]);
        let password_digest = sha256(&[password.as_bytes()]);
        let mut plain_match: Option<&User> = None;
        let mut bcrypt_candidate: Option<&User> = None;
        for user in &self.users {
            let same_name = user.name_digest.ct_eq(&name_digest);
            match &user.verifier {
                Verifier::Plain(digest) => {
                    let ok: Choice = same_name & digest.ct_eq(&password_digest);
                    if bool::from(ok) {
                        plain_match = Some(user);
                    }
                }
                Verifier::Bcrypt(_) => {
                    if bool::from(same_name) {
                        bcrypt_candidate = Some(user);
                    }
                }
            }
        }
        if let Some(user) = plain_match {
            return Some(user.name.clone());
        }
        if !self.has_bcrypt {
            return None;
        }
        let hash: Arc<str> = match bcrypt_candidate.map(|u| &u.verifier) {
            Some(Verifier::Bcrypt(hash)) => hash.clone(),
            _ => Arc::clone(&self.dummy),
        };
        let _slot = self.bcrypt_slots.acquire().await.ok()?;
        let password = Secret::new(password);
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password.expose(), &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        let user = bcrypt_candidate.filter(|_| verified)?;
        self.cache.lock().expect("cache lock").insert(key, user.name.clone());
        Some(user.name.clone())
    }
}

/// Hashes a password with bcrypt for an htpasswd line.
pub(crate) fn hash_password(password: &str, cost: u32) -> Result<String, bcrypt::BcryptError> {
    bcrypt::hash(password, cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Users {
        let hash = hash_password("bcrypt-pw", 4).unwrap();
        let text = format!("# a comment\n\nbob:{hash}\n");
        Users::builder().plain("alice", &Secret::new("plain-pw")).htpasswd(&text, "users").unwrap().build(2)
    }

    #[tokio::test]
    async fn verifies_each_kind_of_user() {
        let users = store();
        let table = [
            ("alice", "plain-pw", Some("alice")),
            ("alice", "plain-p", None),
            ("alice", "plain-pw ", None),
            ("alice", "bcrypt-pw", None),
            ("bob", "bcrypt-pw", Some("bob")),
            ("bob", "plain-pw", None),
            ("carol", "plain-pw", None),
            ("", "", None),
        ];
        for (name, password, expected) in table {
            assert_eq!(users.verify(name, password).await.as_deref(), expected, "{name}:{password}");
        }
    }

    #[tokio::test]
    async fn the_cache_holds_verified_credentials_only_and_stays_bounded() {
        let users = store();
        assert!(users.verify("bob", "bcrypt-pw").await.is_some());
        assert!(users.verify("bob", "wrong").await.is_none());
        {
            let cache = users.cache.lock().unwrap();
            assert_eq!(cache.len(), 1, "a failed attempt must not be cached");
        }
        let mut cache = users.cache.lock().unwrap();
        for i in 0..10u8 {
            cache.insert([i; 32], "x".into());
        }
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn htpasswd_errors_name_the_line() {
        let table = [
            ("bob\n", "users:1: expected `name:hash`"),
            ("# c\nbob:$apr1$xyz$abc\n", "users:2: only bcrypt hashes"),
            (":$2b$04$abc\n", "users:1: empty user name"),
        ];
        for (text, expected) in table {
            let error = Users::builder().htpasswd(text, "users").err().unwrap().to_string();
            assert!(error.starts_with(expected), "{text:?} gave {error}");
        }
    }

    #[test]
    fn an_unknown_name_costs_as_much_as_the_costliest_user() {
        let table: &[(&[u32], u32)] = &[(&[], 10), (&[10], 10), (&[12], 12), (&[4, 11], 11)];
        for (costs, expected) in table {
            let mut builder = Users::builder().plain("plain", &Secret::new("pw"));
            for (n, cost) in costs.iter().enumerate() {
                let hash = hash_password("pw", *cost).unwrap();
                builder = builder.bcrypt(&format!("user{n}"), &hash).unwrap();
            }
            let users = builder.build(4);
            assert_eq!(bcrypt_cost(&users.dummy), Some(*expected), "{costs:?}");
        }
    }

    #[test]
    fn digests_hide_length() {
        // Comparing raw strings with ct_eq still returns early on a length mismatch, which
        // tells an attacker the password's length; digests always have 32 bytes.
        assert_eq!(sha256(&[b"a"]).len(), sha256(&[b"a much longer password"]).len());
        assert_eq!(DUMMY_BCRYPT.len(), 60);
    }
}
