//! The command line: `berth serve | check | hash-password | healthcheck | client-config |
//! traefik labels | token create`.
//!
//! It lives in the library so that a binary with its own native services (see
//! `examples/native-greeter`) gets the same command line by calling [`run`].

use std::{
    io::{BufRead, IsTerminal},
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
};

use clap::{Parser, Subcommand};

mod client_config;
mod healthcheck;
mod status;
mod token;
mod traefik;

use crate::{
    config::Config,
    gateway::Gateway,
    native::NativeRegistry,
    preflight::{self, Severity},
};

/// Exit code for a bad configuration or command line (BSD `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// Exit code of `berth check` when the configuration is valid but names what is not there: a
/// command not on `PATH`, a missing image or bind-mount source (BSD `EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: u8 = 69;
/// Exit code when the listener cannot be bound (BSD `EX_OSERR`).
pub const EXIT_OS: u8 = 71;

#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "A Streamable-HTTP MCP gateway")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve every configured backend (the default command).
    Serve {
        /// The configuration file; without one, berth serves its built-in native services.
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// The address to listen on, HOST:PORT, overriding `server.listen`.
        #[arg(long, env = "BERTH_LISTEN", value_parser = listen_address)]
        listen: Option<SocketAddr>,
    },
    /// Validate a configuration and its users, check that the commands, images and volume
    /// sources it names exist, then exit (64: invalid, 69: something it names is missing).
    Check {
        /// The configuration file.
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// Also start each shared stdio server once and warn when it keeps per-user state
        /// (tasks, logging) that belongs in `sharing = "per-session"`.
        #[arg(long)]
        probe: bool,
    },
    /// Read a password on standard input and print an htpasswd line with its bcrypt hash.
    HashPassword {
        /// The user name written before the hash.
        #[arg(long, short, default_value = "berth")]
        user: String,
        /// The bcrypt cost (work factor).
        #[arg(long, default_value_t = 12)]
        cost: u32,
    },
    /// GET / on berth's own port and exit 0 on 200, 1 otherwise (the image's HEALTHCHECK).
    Healthcheck {
        /// The configuration whose `server.listen` (and `server.tls`) to check.
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// The port, overriding the configuration's.
        #[arg(long, conflicts_with = "url")]
        port: Option<u16>,
        /// A full URL to check instead (http:// or https://; certificates are not verified).
        #[arg(long)]
        url: Option<String>,
        /// How long to wait for the answer.
        #[arg(long, default_value = "5s", value_parser = crate::config::ConfigDuration::parse)]
        timeout: crate::config::ConfigDuration,
    },
    /// Print the backends of a running berth as a table (from its admin listener's
    /// `/api/backends`; the password comes from `BERTH_ADMIN_PASSWORD` or standard input).
    Status {
        /// The admin listener's URL (default: the configuration's `admin.listen`, else
        /// http://127.0.0.1:9180).
        #[arg(long)]
        admin: Option<String>,
        /// The configuration whose `admin.listen` to ask.
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// The admin user.
        #[arg(long, short, env = "BERTH_ADMIN_USER", default_value = "admin")]
        user: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "5s", value_parser = crate::config::ConfigDuration::parse)]
        timeout: crate::config::ConfigDuration,
    },
    /// Print the configuration snippet an MCP client needs to reach a backend.
    ClientConfig {
        /// The client.
        #[arg(long, value_enum)]
        client: client_config::Client,
        /// The backend's MCP URL: https://fs.mcp.example.com/mcp or https://mcp.example.com/fs/mcp.
        #[arg(long)]
        url: String,
        /// The user; the password is then read on standard input and the credential filled in.
        #[arg(long)]
        user: Option<String>,
        /// The server's name in the client (default: the backend named by the URL).
        #[arg(long)]
        name: Option<String>,
    },
    /// Traefik integration.
    Traefik {
        #[command(subcommand)]
        command: TraefikCommand,
    },
    /// API tokens for `Authorization: Bearer`.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new random 256-bit token (once: berth keeps only its SHA-256) and the
    /// `[[auth.tokens]]` entry to add to the configuration.
    Create {
        /// The token's name; its identity is `token:<name>`.
        #[arg(long)]
        name: String,
        /// Its groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// When it stops working: 2027-01-01 (midnight UTC) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TraefikCommand {
    /// Print the docker-compose labels that route <backend>.<domain> to berth, for every backend.
    Labels {
        /// The configuration whose backends get routers.
        #[arg(long, short, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// The domain below which the backends live (default: server.base_domain).
        #[arg(long)]
        domain: Option<String>,
        /// Traefik's HTTPS entrypoint.
        #[arg(long, default_value = "websecure")]
        entrypoint: String,
        /// Traefik's ACME certificate resolver.
        #[arg(long, default_value = "letsencrypt")]
        resolver: String,
        /// One HostRegexp router with a wildcard certificate instead of one router per backend.
        #[arg(long)]
        wildcard: bool,
    },
}

/// `--listen` and `BERTH_LISTEN`: `HOST:PORT`, as `server.listen`.
fn listen_address(text: &str) -> Result<SocketAddr, String> {
    crate::config::parse_listen(text)
        .map_err(|message| format!("{message} (--listen and BERTH_LISTEN take HOST:PORT, as server.listen does)"))
}

/// The log filter: `RUST_LOG`, else `info`. rmcp logs every native session at `info`, with the
/// client's whole initialize parameters (`peer_info=Some(InitializeRequestParams{...})`), so
/// it is kept at `warn` unless `RUST_LOG` names it (`RUST_LOG=info,rmcp=info`).
fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    let mut filter = rust_log
        .and_then(|directives| tracing_subscriber::EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    if !rust_log.is_some_and(|directives| directives.contains("rmcp")) {
        filter = filter.add_directive("rmcp=warn".parse().expect("a valid directive"));
    }
    // bollard logs request bodies at trace, container environments (secrets) included:
    // never let them through, whatever RUST_LOG asks for.
    filter.add_directive("bollard=info".parse().expect("a valid directive"))
}

fn init_tracing() {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    // Colours only on a terminal: container logs and log shippers get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("BERTH_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Reads the configuration (`listen`, from `--listen`, overrides `server.listen`) and builds the
/// gateway.
fn load(
    config: Option<&PathBuf>,
    listen: Option<SocketAddr>,
    registry: &NativeRegistry,
) -> Result<(Config, Gateway), ExitCode> {
    let loaded = match config {
        Some(path) => Config::load(path),
        None => Config::builtin(registry.names().map(str::to_owned)),
    };
    let mut config = loaded.map_err(|error| {
        eprintln!("berth: invalid configuration: {error}");
        ExitCode::from(EXIT_USAGE)
    })?;
    if let Some(listen) = listen {
        config.override_listen(listen);
    }
    let gateway = Gateway::build(&config, registry).map_err(|error| {
        eprintln!("berth: invalid configuration: {error}");
        ExitCode::from(EXIT_USAGE)
    })?;
    Ok((config, gateway))
}

/// Logs what the host policy and the authentication say together, once: an open gateway is
/// a warning in any case.
fn log_access(config: &Config, gateway: &Gateway) {
    let any_host = config.server.public_hosts.is_empty() && config.server.base_domain.is_none();
    match (gateway.is_open(), any_host) {
        (true, true) => tracing::warn!(
            "!!! auth = \"none\": every MCP route is served WITHOUT authentication, to localhost Host headers only \
             (set server.public_hosts to serve other names) !!!"
        ),
        (true, false) => tracing::warn!(
            "!!! auth = \"none\": every MCP route is served WITHOUT authentication, to the hosts of \
             server.public_hosts and server.base_domain !!!"
        ),
        (false, true) => tracing::info!("server.public_hosts is empty: any Host header is accepted"),
        (false, false) => {}
    }
}

/// `backends a, b`, or `no backends`.
fn describe_backends(names: &[String]) -> String {
    if names.is_empty() { "no backends".to_string() } else { format!("backends {}", names.join(", ")) }
}

async fn serve(config: Option<PathBuf>, listen: Option<SocketAddr>, registry: NativeRegistry) -> ExitCode {
    let (config, gateway) = match load(config.as_ref(), listen, &registry) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    log_access(&config, &gateway);
    // What `check` would report: logged, and berth serves anyway (a backend may be fixed, an
    // image pulled, the engine started, while it runs).
    for finding in preflight::run(&config, &|name| std::env::var(name).ok()).await {
        match finding.severity {
            Severity::Problem | Severity::Warning => tracing::warn!("{finding}"),
            Severity::Note => tracing::info!("{finding}"),
        }
    }
    // Before the port is bound and "listening" logged: a SIGTERM from then on shuts down cleanly.
    let shutdown = crate::server::signal();
    let address = config.server.listen;
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("berth: cannot listen on {address}: {error}");
            return ExitCode::from(EXIT_OS);
        }
    };
    let mut gateway = gateway;
    if let Some(admin) = gateway.admin_address() {
        let listener = match tokio::net::TcpListener::bind(admin).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("berth: cannot listen on {admin} (admin.listen): {error}");
                return ExitCode::from(EXIT_OS);
            }
        };
        let local = listener.local_addr().map_or_else(|_| admin.to_string(), |a| a.to_string());
        tracing::info!("admin listening on {local}");
        gateway = gateway.with_admin_listener(listener);
    }
    let local = listener.local_addr().map_or_else(|_| address.to_string(), |a| a.to_string());
    tracing::info!(backends = ?gateway.backend_names(), "berth listening on {local}");
    gateway.serve(listener, shutdown).await;
    tracing::info!("berth stopped");
    ExitCode::SUCCESS
}

/// `berth check`: 64 when the configuration is invalid, 69 when it is valid but names what
/// is not there; warnings and notes do not change the exit code.
async fn check(config: Option<PathBuf>, probe: bool, registry: NativeRegistry) -> ExitCode {
    let (config, gateway) = match load(config.as_ref(), None, &registry) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let findings = preflight::run(&config, &|name| std::env::var(name).ok()).await;
    let mut problems = 0;
    for finding in &findings {
        match finding.severity {
            Severity::Problem => {
                problems += 1;
                eprintln!("berth: {finding}");
            }
            Severity::Warning => eprintln!("berth: warning: {finding}"),
            Severity::Note => eprintln!("berth: note: {finding}"),
        }
    }
    if probe {
        for (name, outcome) in gateway.probe_shared().await {
            match outcome {
                Ok(kept) if kept.is_empty() => {}
                Ok(kept) => eprintln!(
                    "berth: warning: backend `{name}` is shared, and its server declares {}: berth keeps them apart \
                     per session, but a server with per-user state belongs in sharing = \"per-session\"",
                    kept.join(" and ")
                ),
                Err(error) => {
                    problems += 1;
                    eprintln!("berth: backend `{name}`: its shared server did not start: {error}");
                }
            }
        }
    }
    if problems > 0 {
        let plural = if problems == 1 { "problem" } else { "problems" };
        eprintln!("berth: {problems} {plural}: the configuration is valid, but these backends would fail when used");
        return ExitCode::from(EXIT_UNAVAILABLE);
    }
    println!("configuration ok: {}", describe_backends(&gateway.backend_names()));
    ExitCode::SUCCESS
}

/// A runtime for the commands that need one.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|error| {
        eprintln!("berth: cannot start the runtime: {error}");
        ExitCode::from(EXIT_OS)
    })
}

/// Reads one line on standard input, prompting with `prompt` on a terminal.
fn read_password(prompt: &str) -> Result<String, ExitCode> {
    if std::io::stdin().is_terminal() {
        eprintln!("{prompt} type it, then Enter (it is echoed; pipe it in to avoid that)");
    }
    let mut line = String::new();
    if let Err(error) = std::io::stdin().lock().read_line(&mut line) {
        eprintln!("berth: cannot read the password: {error}");
        return Err(ExitCode::from(EXIT_USAGE));
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("berth: the password is empty");
        return Err(ExitCode::from(EXIT_USAGE));
    }
    Ok(password.to_string())
}

/// Why `user` cannot be written before the hash of an htpasswd line, if it cannot: the line is
/// `name:hash`, and berth reads the name up to the first `:`.
fn invalid_user_name(user: &str) -> Option<&'static str> {
    if user.is_empty() {
        Some("the user name is empty")
    } else if user.contains(':') {
        Some("the user name contains `:`, which separates the name from the hash in an htpasswd line")
    } else {
        None
    }
}

fn hash_password(user: &str, cost: u32) -> ExitCode {
    if let Some(why) = invalid_user_name(user) {
        eprintln!("berth: --user `{user}`: {why}; choose a non-empty user name without `:`");
        return ExitCode::from(EXIT_USAGE);
    }
    let password = match read_password("The password:") {
        Ok(password) => password,
        Err(code) => return code,
    };
    match crate::auth::hash_password(&password, cost) {
        Ok(hash) => {
            println!("{user}:{hash}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("berth: {error}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Parses the command line and runs it with the native services of `registry`.
pub fn run(registry: NativeRegistry) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are not errors; a bad flag or value is a usage error (64).
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_tracing();
    match cli.command.unwrap_or(Command::Serve { config: None, listen: None }) {
        Command::Serve { config, listen } => match runtime() {
            Ok(runtime) => runtime.block_on(serve(config, listen, registry)),
            Err(code) => code,
        },
        Command::Check { config, probe } => match runtime() {
            Ok(runtime) => runtime.block_on(check(config, probe, registry)),
            Err(code) => code,
        },
        Command::HashPassword { user, cost } => hash_password(&user, cost),
        Command::Healthcheck { config, port, url, timeout } => {
            healthcheck::run(config.as_deref(), port, url.as_deref(), timeout.0)
        }
        Command::Status { admin, config, user, timeout } => {
            status::run(admin.as_deref(), config.as_deref(), &user, timeout.0)
        }
        Command::ClientConfig { client, url, user, name } => {
            client_config::run(client, &url, user.as_deref(), name.as_deref())
        }
        Command::Token { command: TokenCommand::Create { name, groups, expires } } => {
            token::create(&name, &groups, expires.as_deref())
        }
        Command::Traefik { command: TraefikCommand::Labels { config, domain, entrypoint, resolver, wildcard } } => {
            let loaded = match &config {
                Some(path) => Config::load(path),
                None => Config::builtin(registry.names().map(str::to_owned)),
            };
            match loaded {
                Ok(config) => {
                    let options =
                        traefik::LabelOptions { domain: String::new(), port: 0, entrypoint, resolver, wildcard };
                    traefik::run(&config, domain, options)
                }
                Err(error) => {
                    eprintln!("berth: invalid configuration: {error}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rmcp_stays_at_warn_unless_rust_log_names_it() {
        let table = [(None, true), (Some("info"), true), (Some("debug"), true), (Some("info,rmcp=debug"), false)];
        for (rust_log, quiet) in table {
            let filter = super::log_filter(rust_log).to_string();
            assert_eq!(filter.contains("rmcp=warn"), quiet, "RUST_LOG={rust_log:?}: {filter}");
            assert!(filter.contains("bollard=info"), "RUST_LOG={rust_log:?}: {filter}");
        }
    }
}
