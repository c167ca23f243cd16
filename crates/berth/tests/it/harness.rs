//! Starts a real berth on `127.0.0.1:0` inside the test's runtime, with its own shutdown; the
//! configurations tests give it, the credentials they use, and where the workspace's binaries,
//! tools and Docker test images come from.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use base64::Engine;
use berth::{Config, Gateway, NativeRegistry};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// The user every test configuration defines.
pub(crate) const USER: &str = "alice";
/// Alice's password.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// A configuration with one user and the built-in `conformance` backend, plus `extra`.
pub(crate) fn config_with(extra: &str) -> String {
    format!(
        "[[auth.users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
         [backends.conformance]\nkind = \"native\"\nrequired = true\n\n{extra}"
    )
}

/// `backend` (its TOML keys, without a table header) twice: as `shared`, one instance for every
/// session, and as `per_session`, an instance for each.
pub(crate) fn shared_and_per_session([shared, per_session]: [&str; 2], backend: &str) -> String {
    let backend = backend.trim_end();
    format!("[backends.{shared}]\n{backend}\n\n[backends.{per_session}]\n{backend}\nsharing = \"per-session\"\n\n")
}

/// The stdio fixture `berth-fixture-stdio` (see its doc for its tools).
pub(crate) fn fixture_binary() -> PathBuf {
    workspace_bin("berth-fixtures", "berth-fixture-stdio")
}

/// The routes of [`fixture_config`]: the fixture shared by every session, then one per session.
pub(crate) const FIXTURE_ROUTES: [&str; 2] = ["fx", "fx-solo"];

/// [`config_with`] the fixture as backend `fx` (shared) and `fx-solo` (per-session), each with
/// the `extra` options.
pub(crate) fn fixture_config(extra: &str) -> String {
    let backend = format!("kind = \"process\"\ncommand = \"{}\"\n{extra}", fixture_binary().display());
    config_with(&shared_and_per_session(FIXTURE_ROUTES, &backend))
}

/// `Authorization: Basic ...` for a user and password.
pub(crate) fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Alice's Authorization header value.
pub(crate) fn alice() -> String {
    basic(USER, PASSWORD)
}

/// A berth serving in the background of the current runtime.
pub(crate) struct Berth {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Where its admin listener listens, when the configuration has `[admin]` (its
    /// `admin.listen`, normally `127.0.0.1:0`).
    pub(crate) admin: Option<SocketAddr>,
    /// The deployment name of its containers (label `berth.deployment`).
    pub(crate) deployment: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Berth {
    /// Starts berth on a configuration given as TOML text.
    pub(crate) async fn start(toml: &str) -> Self {
        Self::start_with(toml, &NativeRegistry::builtin()).await
    }

    /// Starts berth on a configuration given as TOML text, with its own native services.
    pub(crate) async fn start_with(toml: &str, registry: &NativeRegistry) -> Self {
        Self::start_on(toml, registry, "127.0.0.1:0").await
    }

    /// Starts berth listening on `bind` (another loopback address than 127.0.0.1, say).
    pub(crate) async fn start_on(toml: &str, registry: &NativeRegistry, bind: &str) -> Self {
        let config = Config::parse(toml, Some(Path::new("test.toml"))).expect("valid test config");
        Self::serve(config, registry, bind).await
    }

    /// Starts berth on a configuration file, which it reads again when asked to reload.
    pub(crate) async fn start_file(path: &Path) -> Self {
        let config = Config::load(path).expect("valid test config");
        Self::serve(config, &NativeRegistry::builtin(), "127.0.0.1:0").await
    }

    async fn serve(config: Config, registry: &NativeRegistry, bind: &str) -> Self {
        // Each berth of the test run gets its own deployment name, so that a test finds its
        // berth's containers by it and no other.
        let deployment = unique_name("test");
        let env = |name: &str| (name == "BERTH_INSTANCE_NAME").then(|| deployment.clone());
        let mut gateway = Gateway::build_with_env(&config, registry, &env).expect("gateway builds");
        let mut admin = None;
        if let Some(address) = gateway.admin_address() {
            let listener = TcpListener::bind(address).await.unwrap();
            admin = Some(listener.local_addr().unwrap());
            gateway = gateway.with_admin_listener(listener);
        }
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.serve(listener, async move {
            let _ = stopped.await;
        }));
        Self { addr, admin, deployment, stop: Some(stop), task: Some(task) }
    }

    /// Starts berth with the default test configuration.
    pub(crate) async fn default() -> Self {
        Self::start(&config_with("")).await
    }

    /// `http://127.0.0.1:port{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://<admin listener>{path}`; panics without `[admin]`.
    pub(crate) fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin.expect("the configuration has [admin]"))
    }

    /// The MCP endpoint of `backend`: `http://127.0.0.1:port/{backend}/mcp`.
    pub(crate) fn mcp_url(&self, backend: &str) -> String {
        self.url(&format!("/{backend}/mcp"))
    }

    /// Begins shutdown and waits until `serve` has returned.
    pub(crate) async fn stop(mut self) {
        self.stop.take().map(|stop| stop.send(()));
        if let Some(task) = self.task.take() {
            task.await.expect("serve does not panic");
        }
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.stop.take().map(|stop| stop.send(()));
    }
}

/// A reqwest client that keeps nothing between tests.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// The root of the repository.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The Python of `tools/.venv`, where the official MCP Python SDK is installed.
pub(crate) fn python() -> PathBuf {
    let python = repo_root().join("tools/.venv/bin/python");
    assert!(python.exists(), "the Python SDK is not installed: run scripts/test (it creates tools/.venv)");
    python
}

/// The newest modification time of the files below `dir`.
fn newest_below(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() { newest_below(&path) } else { entry.metadata().ok()?.modified().ok() };
        newest = newest.max(time);
    }
    newest
}

/// The path of a binary of this workspace (`berth-conformance`, fixtures), building it first
/// if the test run did not (a filtered `cargo test -p berth` builds only berth's own, and a
/// `cargo test` does not rebuild another package's binaries): when it is missing or older than
/// its package's sources.
pub(crate) fn workspace_bin(package: &str, name: &str) -> PathBuf {
    let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let path = dir.join(name);
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let sources = newest_below(&repo_root().join("crates").join(package));
    if built.is_none() || sources > built {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", package, "--bin", name])
            .env("CARGO_TARGET_DIR", dir.parent().unwrap())
            .status()
            .unwrap();
        assert!(status.success(), "building {name} failed");
    }
    path
}

/// A name unique to this test process and call.
pub(crate) fn unique_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Whether a Docker engine answers. When `BERTH_REQUIRE_DOCKER=1` (CI) a missing engine fails
/// the test instead of skipping it.
pub(crate) fn docker_available() -> bool {
    let up = engine_answers();
    if !up {
        assert!(
            std::env::var("BERTH_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "BERTH_REQUIRE_DOCKER=1 but no Docker engine answers"
        );
        eprintln!("no Docker engine answers: skipping this Docker test");
    }
    up
}

/// Whether `docker version` answers, now.
pub(crate) fn engine_answers() -> bool {
    std::process::Command::new("docker")
        .arg("version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the Docker tests run here ([`docker_available`]), with the test `images` built when
/// they do.
pub(crate) fn docker_ready(images: &[&str]) -> bool {
    if !docker_available() {
        return false;
    }
    build_test_images(images);
    true
}

/// Builds the offline test images (idempotent; serialised between test processes).
pub(crate) fn build_test_images(which: &[&str]) {
    let script = repo_root().join("scripts/build-test-images.sh");
    let status = std::process::Command::new("bash").arg(script).args(which).status().unwrap();
    assert!(status.success(), "building test images {which:?} failed");
}

/// Ids of the containers carrying `label` (`key=value`), running or not.
pub(crate) fn containers_with(label: &str) -> Vec<String> {
    let output = std::process::Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter", &format!("label={label}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

/// Ids of the containers of the deployment `deployment` (label `berth.deployment`), running or
/// not.
pub(crate) fn containers_of(deployment: &str) -> Vec<String> {
    containers_with(&format!("berth.deployment={deployment}"))
}

/// Ids of the running containers carrying `label` (`key=value`).
pub(crate) fn running_with(label: &str) -> Vec<String> {
    let output = std::process::Command::new("docker")
        .args(["ps", "-q", "--no-trunc", "--filter", &format!("label={label}"), "--filter", "status=running"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

/// Removes, when dropped (the test passed or not), every container carrying one of its labels:
/// for tests that leave containers behind on purpose (a berth killed with SIGKILL). The labels
/// must be the test's own (a backend name from [`unique_name`]): the engine may be shared.
pub(crate) struct RemoveContainers(pub(crate) Vec<String>);

impl Drop for RemoveContainers {
    fn drop(&mut self) {
        for label in &self.0 {
            let ids = containers_with(label);
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", "-v"])
                    .args(&ids)
                    .stdout(std::process::Stdio::null())
                    .status();
            }
        }
    }
}
