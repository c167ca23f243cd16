//! `[server.tls]`: berth terminates TLS itself, for deployments without a reverse proxy.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{ConfigDuration, EnvString};

/// `[server.tls]`: a PEM certificate chain and private key, reloaded when the files change.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (certbot's `fullchain.pem`).
    pub cert: Spanned<EnvString>,
    /// The private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) PEM (certbot's `privkey.pem`).
    pub key: Spanned<EnvString>,
    /// How often the files are read again to pick up a renewed certificate.
    #[serde(default = "default_reload_interval")]
    pub reload_interval: ConfigDuration,
    /// Time a client has to finish the TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: ConfigDuration,
}

fn default_reload_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}

fn default_handshake_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}
