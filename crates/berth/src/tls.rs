//! TLS termination with rustls, for deployments without a reverse proxy.
//!
//! The certificate chain and key are PEM files (certbot's `fullchain.pem` and `privkey.pem`).
//! A background task reads them again every `reload_interval` and, when their contents changed
//! and still form a valid pair, swaps the [`CertifiedKey`] that [`ReloadingResolver`] hands to
//! new handshakes: connections already open keep the certificate they were opened with, and none
//! is dropped. A half-written renewal (new certificate, old key) is reported and retried at the
//! next tick, while the old pair stays in service.
//!
//! ALPN offers `h2` and `http/1.1`; hyper's auto builder then speaks whichever the client chose.
//! The handshake runs in each connection's own task, under a timeout, so that a slow or silent
//! client cannot hold up the accept loop.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;

/// Why a certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM block of the expected kind.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the pair (unsupported key, or a key that does not match the certificate).
    #[error("{cert} and {key} do not form a usable pair: {source}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// The files of one certificate and their last loaded contents.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pems {
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// The certificate chain and key paths.
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn read(&self) -> Result<Pems, TlsError> {
        let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source });
        Ok(Pems { cert: read(&self.cert)?, key: read(&self.key)? })
    }

    fn certified_key(&self, pems: &Pems, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pems.cert)
            .collect::<Result<_, _>>()
            .map_err(|error| TlsError::Pem { path: self.cert.clone(), message: error.to_string() })?;
        if chain.is_empty() {
            return Err(TlsError::Pem { path: self.cert.clone(), message: "no CERTIFICATE block".into() });
        }
        let key = PrivateKeyDer::from_pem_slice(&pems.key).map_err(|error| TlsError::Pem {
            path: self.key.clone(),
            message: format!("no usable PRIVATE KEY block ({error})"),
        })?;
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Pair {
            cert: self.cert.clone(),
            key: self.key.clone(),
            source,
        })
    }
}

/// Hands every new handshake the current certificate.
#[derive(Debug)]
pub(crate) struct ReloadingResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner())))
    }
}

/// A TLS acceptor whose certificate follows its files.
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    resolver: Arc<ReloadingResolver>,
    provider: Arc<CryptoProvider>,
    files: Files,
    loaded: std::sync::Mutex<Pems>,
    reload_interval: Duration,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.files.cert).field("key", &self.files.key).finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificate and key named by `config`; `base` resolves relative paths.
    pub(crate) fn load(config: &TlsConfig, base: Option<&Path>) -> Result<Self, TlsError> {
        let resolve = |path: &str| match base {
            Some(base) if Path::new(path).is_relative() => base.join(path),
            _ => PathBuf::from(path),
        };
        let files = Files { cert: resolve(&config.cert.get_ref().0), key: resolve(&config.key.get_ref().0) };
        // The ring provider, named explicitly: it is the one berth is built with, and the
        // process-wide default is ambiguous when another crate enables a second provider.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pems = files.read()?;
        let key = files.certified_key(&pems, &provider)?;
        let resolver = Arc::new(ReloadingResolver { current: RwLock::new(Arc::new(key)) });
        let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Pair { cert: files.cert.clone(), key: files.key.clone(), source })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            resolver,
            provider,
            files,
            loaded: std::sync::Mutex::new(pems),
            reload_interval: config.reload_interval.0,
            handshake_timeout: config.handshake_timeout.0,
        })
    }

    /// Runs the TLS handshake on an accepted connection, within the handshake timeout.
    pub(crate) async fn handshake(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
        }
    }

    /// Reads the files once; swaps the certificate if they changed and form a valid pair.
    /// Returns whether a new certificate was installed.
    pub(crate) fn reload(&self) -> Result<bool, TlsError> {
        let pems = self.files.read()?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *loaded == pems {
            return Ok(false);
        }
        let key = self.files.certified_key(&pems, &self.provider)?;
        *self.resolver.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(key);
        *loaded = pems;
        Ok(true)
    }

    /// Reloads the files every `reload_interval` until `stop` is cancelled.
    pub(crate) async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.reload_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            let this = Arc::clone(&self);
            // File reads and key parsing are blocking work: keep them off the runtime's threads.
            match tokio::task::spawn_blocking(move || this.reload()).await {
                Ok(Ok(true)) => tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded"),
                Ok(Ok(false)) => {}
                Ok(Err(error)) => tracing::warn!(%error, "TLS certificate not reloaded; the previous one stays in use"),
                Err(error) => tracing::warn!(%error, "TLS reload task failed"),
            }
        }
    }
}
