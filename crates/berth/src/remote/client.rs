//! The HTTP client of an http backend: hyper-util's pooled client over a TCP connector with
//! `TCP_NODELAY` (berth's rule for every socket) and rustls, trusting the system's roots (or,
//! where there are none, as in the `scratch` image, Mozilla's, compiled in) or the backend's
//! `ca_file`.

use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};

/// The client type of every http backend.
pub(crate) type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Idle pooled connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Most idle connections kept per upstream host.
const POOL_MAX_IDLE: usize = 32;

/// A pooled client; `tls` says whether the URL is `https://` (only then are roots loaded).
pub(crate) fn client(tls: bool, ca_file: Option<&Path>, connect_timeout: Duration) -> Result<UpstreamClient, String> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    let roots = if tls { roots(ca_file)? } else { RootCertStore::empty() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(POOL_MAX_IDLE)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector))
}

/// The certificate authorities of `ca_file`, or the system's.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let shown = path.display();
            let certs =
                CertificateDer::pem_file_iter(path).map_err(|error| format!("cannot read `{shown}`: {error}"))?;
            for cert in certs {
                let cert = cert.map_err(|error| format!("`{shown}` is not a PEM certificate file: {error}"))?;
                roots.add(cert).map_err(|error| format!("`{shown}`: {error}"))?;
            }
            if roots.is_empty() {
                return Err(format!("`{shown}` holds no certificate"));
            }
        }
        None => {
            let loaded = rustls_native_certs::load_native_certs();
            for error in &loaded.errors {
                tracing::warn!(%error, "a system certificate could not be loaded");
            }
            let (_, ignored) = roots.add_parsable_certificates(loaded.certs);
            if ignored > 0 {
                tracing::warn!(ignored, "system certificates ignored (not parsable)");
            }
            if roots.is_empty() {
                // The `scratch` image has no system store: Mozilla's roots, compiled in, stand
                // for it.
                tracing::info!("no system root certificates: trusting the Mozilla roots compiled into berth");
                roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
            }
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let table = [(empty.as_path(), "holds no certificate"), (missing.as_path(), "cannot read")];
        for (path, expected) in table {
            let error = roots(Some(path)).unwrap_err();
            assert!(error.contains(expected), "{} gave {error}", path.display());
        }
    }
}
