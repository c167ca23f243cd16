//! berth terminating TLS itself: a certificate made here with rcgen, clients that verify it,
//! HTTP/2 by ALPN, and a certificate swapped on disk while a connection stays open.

use std::{path::Path, time::Duration};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::{
    harness::{Berth, config_with},
    process::berth_command,
    requests::{self, initialize},
    wait::poll,
};

/// A CA and a `localhost` certificate it signed, as PEM: (CA, leaf chain, leaf key).
pub(crate) fn issue(label: &str) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, format!("berth test CA {label}"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// A client that trusts only `ca`, and reaches `localhost` at berth's address.
fn client_trusting(ca: &str, berth: &Berth) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .resolve("localhost", berth.addr)
        .no_proxy()
        .build()
        .unwrap()
}

fn url(berth: &Berth, path: &str) -> String {
    format!("https://localhost:{}{path}", berth.addr.port())
}

/// `[server.tls]` serving the certificate [`install`]ed in `dir`.
pub(crate) fn tls_section(dir: &Path) -> String {
    format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\nreload_interval = \"100ms\"\n",
        dir.join("fullchain.pem").display(),
        dir.join("privkey.pem").display()
    )
}

fn tls_config(dir: &Path) -> String {
    config_with(&tls_section(dir))
}

/// Writes a certificate the way certbot renews one: new files renamed over the old ones.
pub(crate) fn install(dir: &Path, chain: &str, key: &str) {
    for (name, text) in [("fullchain.pem", chain), ("privkey.pem", key)] {
        let temporary = dir.join(format!("{name}.new"));
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, dir.join(name)).unwrap();
    }
}

#[tokio::test]
async fn verified_https_with_http2_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = issue("one");
    install(dir.path(), &chain, &key);
    let berth = Berth::start(&tls_config(dir.path())).await;
    let client = client_trusting(&ca, &berth);
    let health = client.get(url(&berth, "/")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_2, "ALPN should pick h2");
    // The whole stack runs behind TLS: an MCP initialize through it.
    let initialized = requests::post(&client, url(&berth, "/conformance/mcp"))
        .body(initialize("2025-06-18").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(initialized.status(), 200);
    assert!(initialized.text().await.unwrap().contains("serverInfo"));
    // HTTP/1.1 clients are served too.
    let http1 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .resolve("localhost", berth.addr)
        .http1_only()
        .build()
        .unwrap();
    let answer = http1.get(url(&berth, "/")).send().await.unwrap();
    assert_eq!((answer.status().as_u16(), answer.version()), (200, reqwest::Version::HTTP_11));
    // `berth healthcheck` speaks TLS when the configuration has [server.tls].
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, tls_config(dir.path())).unwrap();
    let health = berth_command()
        .args(["healthcheck", "--config"])
        .arg(&config)
        .args(["--port", &berth.addr.port().to_string()])
        .output()
        .await
        .unwrap();
    assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stderr));
    // A client that trusts another CA refuses the certificate.
    let (other_ca, _, _) = issue("other");
    assert!(client_trusting(&other_ca, &berth).get(url(&berth, "/")).send().await.is_err());
    berth.stop().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, old_chain, old_key) = issue("old");
    install(dir.path(), &old_chain, &old_key);
    let berth = Berth::start(&tls_config(dir.path())).await;
    // One HTTP/2 connection, opened with the old certificate and kept in the client's pool.
    let old_client = client_trusting(&old_ca, &berth);
    assert_eq!(old_client.get(url(&berth, "/")).send().await.unwrap().status(), 200);

    let (new_ca, new_chain, new_key) = issue("new");
    install(dir.path(), &new_chain, &new_key);
    // New connections get the new certificate once berth has read the files again (it polls
    // every 100 ms here); a fresh client that trusts only the new CA proves it.
    let renewed = poll(Duration::from_secs(30), || async {
        let fresh = client_trusting(&new_ca, &berth);
        let served = fresh.get(url(&berth, "/")).send().await.is_ok_and(|r| r.status() == 200);
        if served { Ok(()) } else { Err(()) }
    })
    .await;
    assert!(renewed.is_ok(), "the renewed certificate was never served");
    // New connections no longer see the old certificate...
    assert!(client_trusting(&old_ca, &berth).get(url(&berth, "/")).send().await.is_err());
    // ...but the connection opened before the renewal still works: this client trusts only the
    // old CA, so it cannot have opened a new one.
    let again = old_client.get(url(&berth, "/readyz")).send().await.unwrap();
    assert_eq!(again.status(), 200);

    // A broken renewal (a key that does not match) is refused; the new pair stays in service.
    let (_, _, stray_key) = issue("stray");
    install(dir.path(), &new_chain, &stray_key);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = client_trusting(&new_ca, &berth);
    assert_eq!(fresh.get(url(&berth, "/")).send().await.unwrap().status(), 200);
    berth.stop().await;
}

#[test]
fn missing_or_mismatched_files_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_, chain, _) = issue("a");
    let (_, _, other_key) = issue("b");
    let table = [
        (None, None, "cannot read"),
        (Some(chain.as_str()), Some("not a key"), "PRIVATE KEY"),
        (Some(chain.as_str()), Some(other_key.as_str()), "usable pair"),
    ];
    for (cert, key, needle) in table {
        for (name, text) in [("fullchain.pem", cert), ("privkey.pem", key)] {
            let path = dir.path().join(name);
            let _ = std::fs::remove_file(&path);
            if let Some(text) = text {
                std::fs::write(&path, text).unwrap();
            }
        }
        let config = berth::Config::parse(&tls_config(dir.path()), Some(Path::new("berth.toml"))).unwrap();
        let error = berth::Gateway::build_with_env(&config, &berth::NativeRegistry::builtin(), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("server.tls") && error.contains(needle), "{needle}: {error}");
    }
}

/// `[admin.tls]` terminates TLS on the admin listener with the same code as `[server.tls]`,
/// while the MCP port stays plain HTTP.
#[tokio::test]
async fn the_admin_listener_serves_tls_when_admin_tls_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = issue("admin");
    install(dir.path(), &chain, &key);
    let tls = format!(
        "[admin.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.path().join("fullchain.pem").display(),
        dir.path().join("privkey.pem").display()
    );
    let berth = Berth::start(&crate::admin::admin_config(&tls, "")).await;
    let admin = berth.admin.unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .resolve("localhost", admin)
        .no_proxy()
        .build()
        .unwrap();
    let metrics = client
        .get(format!("https://localhost:{}/metrics", admin.port()))
        .header("authorization", crate::harness::alice())
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("berth_build_info"));
    let plain = crate::harness::http().get(format!("http://{admin}/metrics")).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200, "plain HTTP must not reach the TLS admin listener");
    assert_eq!(crate::harness::http().get(berth.url("/")).send().await.unwrap().status(), 200);
}
