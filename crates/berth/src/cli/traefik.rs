//! `berth traefik labels`: the Docker labels that route every backend's subdomain to berth.
//!
//! Each backend `<name>` gets a router for `Host(<name>.<domain>)` on the `websecure` entrypoint
//! with a Let's Encrypt certificate; all routers share one service, berth's port, and berth's
//! host routing (`server.base_domain`) picks the backend, so no path rewriting is needed. The
//! wildcard variant is one `HostRegexp` router for every subdomain, with a wildcard certificate
//! (which Let's Encrypt issues only through a DNS challenge).

/// What the labels are made from.
#[derive(Debug, Clone)]
pub(crate) struct LabelOptions {
    /// The domain below which each backend has its host: `mcp.example.com`.
    pub(crate) domain: String,
    /// berth's port inside its container.
    pub(crate) port: u16,
    /// Traefik's HTTPS entrypoint.
    pub(crate) entrypoint: String,
    /// Traefik's certificate resolver.
    pub(crate) resolver: String,
    /// One `HostRegexp` router instead of one router per backend.
    pub(crate) wildcard: bool,
}

/// The middlewares of `traefik/dynamic.yml` every router uses: security headers, then the rate
/// limit that slows down password guessing.
const MIDDLEWARES: &str = "berth-headers@file,berth-ratelimit@file";

/// The labels, one `key=value` per entry, in a stable order.
pub(crate) fn labels(backends: &[String], options: &LabelOptions) -> Vec<String> {
    let LabelOptions { domain, port, entrypoint, resolver, wildcard } = options;
    let mut labels = vec![
        "traefik.enable=true".to_string(),
        format!("traefik.http.services.berth.loadbalancer.server.port={port}"),
        // The transport of traefik/dynamic.yml, without timeouts that would cut SSE streams.
        "traefik.http.services.berth.loadbalancer.serverstransport=berth@file".to_string(),
    ];
    let mut router = |id: &str, rule: String| {
        let prefix = format!("traefik.http.routers.{id}");
        labels.push(format!("{prefix}.rule={rule}"));
        labels.push(format!("{prefix}.entrypoints={entrypoint}"));
        labels.push(format!("{prefix}.tls=true"));
        labels.push(format!("{prefix}.tls.certresolver={resolver}"));
        labels.push(format!("{prefix}.service=berth"));
        labels.push(format!("{prefix}.middlewares={MIDDLEWARES}"));
    };
    if *wildcard {
        let escaped = domain.replace('.', "\\.");
        router("berth", format!("HostRegexp(`^[a-z0-9-]+\\.{escaped}$`)"));
        labels.push(format!("traefik.http.routers.berth.tls.domains[0].main={domain}"));
        labels.push(format!("traefik.http.routers.berth.tls.domains[0].sans=*.{domain}"));
    } else {
        for name in backends {
            router(&format!("berth-{name}"), format!("Host(`{name}.{domain}`)"));
        }
    }
    labels
}

/// Prints the labels for the backends of `config`, one YAML list item per line, ready to paste
/// under a compose service's `labels:` (quoted for YAML, `$` doubled for compose).
pub(super) fn run(
    config: &crate::config::Config,
    domain: Option<String>,
    mut options: LabelOptions,
) -> std::process::ExitCode {
    let Some(domain) = domain.or_else(|| config.server.base_domain.as_ref().map(|d| d.get_ref().to_string())) else {
        eprintln!("berth: no domain: pass --domain mcp.example.com or set server.base_domain");
        return std::process::ExitCode::from(super::EXIT_USAGE);
    };
    if config.server.base_domain.as_ref().is_none_or(|d| !d.get_ref().eq_ignore_ascii_case(&domain)) {
        eprintln!(
            "berth: note: set server.base_domain = \"{domain}\" in berth.toml, so that berth routes <backend>.{domain}/mcp to <backend>"
        );
    }
    options.domain = domain;
    options.port = config.server.listen.port();
    let backends: Vec<String> = config.backends.keys().cloned().collect();
    for label in labels(&backends, &options) {
        // YAML double quotes need `\` escaped, and compose expands `$` unless it is doubled.
        println!("      - \"{}\"", label.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "$$"));
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(wildcard: bool) -> LabelOptions {
        LabelOptions {
            domain: "mcp.example.com".into(),
            port: 8080,
            entrypoint: "websecure".into(),
            resolver: "letsencrypt".into(),
            wildcard,
        }
    }

    #[test]
    fn one_router_per_backend() {
        let labels = labels(&["fs".into(), "git".into()], &options(false));
        assert!(labels.contains(&"traefik.http.routers.berth-fs.rule=Host(`fs.mcp.example.com`)".to_string()));
        assert!(labels.contains(&"traefik.http.routers.berth-git.tls.certresolver=letsencrypt".to_string()));
        assert_eq!(labels.iter().filter(|l| l.ends_with(".service=berth")).count(), 2);
    }

    #[test]
    fn the_wildcard_router_escapes_the_domain() {
        let labels = labels(&["fs".into()], &options(true));
        assert!(
            labels.contains(
                &"traefik.http.routers.berth.rule=HostRegexp(`^[a-z0-9-]+\\.mcp\\.example\\.com$`)".to_string()
            )
        );
        assert!(!labels.iter().any(|l| l.contains("berth-fs")));
    }
}
