//! `berth healthcheck`: the container's `HEALTHCHECK`, which cannot rely on curl (the image has
//! nothing but berth).
//!
//! It sends `GET /` to berth on this machine and succeeds on `200`. Over TLS the certificate is
//! not verified: the check asks whether berth answers on its port, not who it is, and the
//! certificate names a public host while the check dials a loopback address. Its small
//! HTTP/1.1 client (`get`) also serves `berth status`.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs},
    sync::Arc,
    time::Duration,
};

use http::Uri;
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

/// Where the check connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// Whether to speak TLS.
    pub(super) tls: bool,
    /// Host name or address, for the connection, `Host` and SNI.
    pub(super) host: String,
    /// The port.
    pub(super) port: u16,
    /// The path and query.
    pub(super) path: String,
}

impl Target {
    /// The target for `--url`.
    pub(super) fn from_url(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|error| format!("`{url}` is not a URL: {error}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("`{url}` must start with http:// or https://")),
        };
        let host = uri.host().ok_or_else(|| format!("`{url}` names no host"))?;
        let host = host.trim_matches(['[', ']']).to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        Ok(Self { tls, host, port, path })
    }

    /// The target for berth listening on `listen`: loopback when it listens on every address.
    pub(super) fn local(listen: SocketAddr, tls: bool) -> Self {
        let ip = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Self { tls, host: ip.to_string(), port: listen.port(), path: "/".into() }
    }
}

/// Accepts any certificate, but still checks the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Sends `GET` to `target` and returns the status code of the answer.
pub(super) fn probe(target: &Target, timeout: Duration) -> Result<u16, String> {
    let answer = send(target, timeout, &[("User-Agent", "berth-healthcheck")], Reading::StatusLine)?;
    status_of(&answer)
}

/// Sends `GET` to `target` with `headers` and returns the status and the body (read until the
/// server closes: the request says `Connection: close`).
pub(super) fn get(target: &Target, timeout: Duration, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
    let answer = send(target, timeout, headers, Reading::Whole)?;
    let status = status_of(&answer)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| "the answer has no body".to_string())?;
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Err("the answer is chunked, which this client does not read".into());
    }
    Ok((status, body.to_string()))
}

/// How much of the answer to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Up to the end of the status line.
    StatusLine,
    /// All of it.
    Whole,
}

fn status_of(answer: &[u8]) -> Result<u16, String> {
    let text = String::from_utf8_lossy(answer);
    text.lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| "the answer is not HTTP".to_string())
}

/// Connects (over TLS when the target says so), sends a `GET` and reads as `read` says.
fn send(target: &Target, timeout: Duration, headers: &[(&str, &str)], read: Reading) -> Result<Vec<u8>, String> {
    let address = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {}: {error}", target.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", target.host))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|error| format!("cannot connect to {address}: {error}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|error| error.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|error| error.to_string())?;
    stream.set_nodelay(true).map_err(|error| error.to_string())?;
    let host_header = if target.host.contains(':') { format!("[{}]", target.host) } else { target.host.clone() };
    let headers: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host_header}:{}\r\n{headers}Connection: close\r\n\r\n",
        target.path, target.port
    );
    let mut answer = Vec::new();
    if target.tls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        let name = ServerName::try_from(target.host.clone()).map_err(|error| error.to_string())?;
        let connection = rustls::ClientConnection::new(Arc::new(config), name).map_err(|error| error.to_string())?;
        let mut tls = rustls::StreamOwned::new(connection, stream);
        exchange(&mut tls, request.as_bytes(), &mut answer, read)?;
    } else {
        exchange(&mut stream, request.as_bytes(), &mut answer, read)?;
    }
    Ok(answer)
}

/// Writes `request`, then reads until the status line is in, or to the end.
fn exchange(stream: &mut impl ReadWrite, request: &[u8], answer: &mut Vec<u8>, read: Reading) -> Result<(), String> {
    stream.write_all(request).map_err(|error| format!("cannot send the request: {error}"))?;
    let mut buffer = [0u8; 4096];
    while read == Reading::Whole || !answer.contains(&b'\n') {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            // A TLS peer that closes without close_notify has still sent everything.
            Err(error) if read == Reading::Whole && error.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(format!("cannot read the answer: {error}")),
        }
    }
    Ok(())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Runs the check: `url` if given, else berth's own listener from `config` (and `port`).
pub(super) fn run(
    config: Option<&std::path::Path>,
    port: Option<u16>,
    url: Option<&str>,
    timeout: Duration,
) -> std::process::ExitCode {
    let target = match url {
        Some(url) => Target::from_url(url),
        None => local_target(config, port),
    };
    let result = target.and_then(|target| probe(&target, timeout).map(|status| (target, status)));
    match result {
        Ok((_, 200)) => std::process::ExitCode::SUCCESS,
        Ok((target, status)) => {
            eprintln!("berth healthcheck: {}:{}{} answered {status}", target.host, target.port, target.path);
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("berth healthcheck: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The listener of the configuration berth serves, as `berth serve` would pick it.
fn local_target(config: Option<&std::path::Path>, port: Option<u16>) -> Result<Target, String> {
    let (mut listen, tls) = match config {
        Some(path) => {
            let config = crate::config::Config::load(path).map_err(|error| error.to_string())?;
            (config.server.listen, config.server.tls.is_some())
        }
        None => (crate::config::ServerConfig::default().listen, false),
    };
    if let Ok(text) = std::env::var("BERTH_LISTEN") {
        listen = text.parse().map_err(|_| format!("BERTH_LISTEN=`{text}` is not an address such as 0.0.0.0:8080"))?;
    }
    if let Some(port) = port {
        listen.set_port(port);
    }
    Ok(Target::local(listen, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let table = [
            ("http://127.0.0.1:8080/", Target { tls: false, host: "127.0.0.1".into(), port: 8080, path: "/".into() }),
            (
                "https://mcp.example.com",
                Target { tls: true, host: "mcp.example.com".into(), port: 443, path: "/".into() },
            ),
            ("http://[::1]:9/readyz", Target { tls: false, host: "::1".into(), port: 9, path: "/readyz".into() }),
        ];
        for (url, expected) in table {
            assert_eq!(Target::from_url(url).unwrap(), expected, "{url}");
        }
        assert!(Target::from_url("ftp://x").is_err());
        assert_eq!(Target::local("0.0.0.0:8080".parse().unwrap(), false).host, "127.0.0.1");
        assert_eq!(Target::local("[::]:8080".parse().unwrap(), true).host, "::1");
        assert_eq!(Target::local("10.1.2.3:81".parse().unwrap(), false).host, "10.1.2.3");
    }
}
