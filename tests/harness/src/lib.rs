//! A real Kubernetes control plane on loopback for kitsync's tests: etcd, kube-apiserver and
//! kube-controller-manager, built from Go modules by `tests/control-plane/build.sh`.
//!
//! One control plane serves a whole test binary ([`ControlPlane::shared`]); tests isolate
//! themselves in namespaces of their own ([`ControlPlane::namespace`]). The processes are
//! stopped when the test binary exits, however it exits: a watchdog process kills them
//! once the test process is gone.

mod certs;
mod process;

use kube::config::{KubeConfigOptions, Kubeconfig};
use process::{Proc, free_port};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use process::tail;

/// The users in the apiserver's token file.
pub const ADMIN: &str = "kitsync-admin";
/// Ordinary users with no rights until a test grants them some.
pub const USERS: [&str; 2] = ["alice", "bob"];

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The binaries are not there and could not be built.
    #[error("control-plane binaries: {0}")]
    Binaries(String),
    /// A process exited or never became ready; carries the end of its log.
    #[error("{name} {what}; last lines of {log}:\n{tail}")]
    Process {
        /// etcd, kube-apiserver or kube-controller-manager.
        name: String,
        /// What went wrong.
        what: String,
        /// Its log file.
        log: String,
        /// The log's last lines.
        tail: String,
    },
    /// Preparing files (certificates, kubeconfig) failed.
    #[error("{0}")]
    Setup(String),
}

/// Where to keep state and which binaries to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// State directory (data, certificates, logs, kubeconfig); a temporary one when `None`.
    pub dir: Option<PathBuf>,
    /// Directory holding etcd, kube-apiserver and kube-controller-manager; found or built
    /// when `None` (see [`bin_dir`]).
    pub bin_dir: Option<PathBuf>,
}

/// A running control plane. Dropping it stops the processes.
pub struct ControlPlane {
    state: State,
    server: String,
    kubeconfig: PathBuf,
    audit_log: PathBuf,
    admin_token: String,
    startup: Duration,
    procs: Vec<Proc>,
    watchdog: Option<std::process::Child>,
}

enum State {
    Temp(#[allow(dead_code)] tempfile::TempDir),
    Kept(PathBuf),
}

impl State {
    fn path(&self) -> &Path {
        match self {
            State::Temp(dir) => dir.path(),
            State::Kept(path) => path,
        }
    }
}

/// The directory of the control-plane binaries: `$KITSYNC_CONTROL_PLANE_BIN`, or what
/// `tests/control-plane/build.sh` prints (building them the first time, cached afterwards).
pub fn bin_dir() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("KITSYNC_CONTROL_PLANE_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../control-plane/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::Binaries(format!("running {}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(Error::Binaries(format!(
            "{} failed ({}); see its output above, or set KITSYNC_CONTROL_PLANE_BIN",
            script.display(),
            out.status
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim();
    if dir.is_empty() {
        return Err(Error::Binaries(format!(
            "{} printed no directory",
            script.display()
        )));
    }
    Ok(PathBuf::from(dir))
}

impl ControlPlane {
    /// The control plane of this test binary, started on first use.
    ///
    /// # Panics
    /// When it cannot start; the message says why, with the failing process's log.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            let plane = ControlPlane::start(Options::default()).map_err(|e| e.to_string())?;
            eprintln!("control plane ready in {:.1?} at {}", plane.startup, plane.server);
            Ok(plane)
        });
        match started {
            Ok(plane) => plane,
            Err(message) => panic!("the test control plane did not start: {message}"),
        }
    }

    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until the apiserver
    /// is ready. Retries once with new ports when a port was taken in between.
    pub fn start(options: Options) -> Result<ControlPlane, Error> {
        match Self::start_once(&options) {
            Err(Error::Process { tail, .. }) if tail.contains("address already in use") => {
                Self::start_once(&options)
            }
            other => other,
        }
    }

    fn start_once(options: &Options) -> Result<ControlPlane, Error> {
        let started = Instant::now();
        let bin = match &options.bin_dir {
            Some(dir) => dir.clone(),
            None => bin_dir()?,
        };
        for name in ["etcd", "kube-apiserver", "kube-controller-manager"] {
            if !bin.join(name).is_file() {
                return Err(Error::Binaries(format!(
                    "{} is missing; run tests/control-plane/build.sh",
                    bin.join(name).display()
                )));
            }
        }
        let state = match &options.dir {
            Some(dir) => {
                // A kept directory is reused across runs: start from clean data.
                let _ = std::fs::remove_dir_all(dir.join("etcd"));
                State::Kept(dir.clone())
            }
            None => State::Temp(
                tempfile::Builder::new()
                    .prefix("kitsync-control-plane-")
                    .tempdir()
                    .map_err(|e| Error::Setup(format!("temp dir: {e}")))?,
            ),
        };
        let dir = state.path().to_path_buf();
        let setup =
            |what: &str, e: &dyn std::fmt::Display| Error::Setup(format!("{what} in {}: {e}", dir.display()));
        std::fs::create_dir_all(dir.join("logs")).map_err(|e| setup("creating logs", &e))?;

        let pki = certs::Pki::generate().map_err(|e| setup("generating certificates", &e))?;
        pki.write(&dir).map_err(|e| setup("writing certificates", &e))?;
        let admin_token = random_token().map_err(|e| setup("reading /dev/urandom", &e))?;
        let mut tokens = format!("{admin_token},{ADMIN},{ADMIN},\"system:masters\"\n");
        let mut user_tokens = Vec::new();
        for user in USERS {
            let token = random_token().map_err(|e| setup("reading /dev/urandom", &e))?;
            tokens.push_str(&format!("{token},{user},{user}\n"));
            user_tokens.push((user, token));
        }
        std::fs::write(dir.join("tokens.csv"), tokens).map_err(|e| setup("writing tokens", &e))?;
        // Writes only, at Metadata level: enough to count what a client sent.
        std::fs::write(
            dir.join("audit-policy.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n    verbs: [create, update, patch, delete, deletecollection]\n  - level: None\n",
        )
        .map_err(|e| setup("writing audit policy", &e))?;
        let audit_log = dir.join("logs/audit.log");
        let _ = std::fs::remove_file(&audit_log);

        let mut procs = Vec::new();
        let etcd_port = free_port().map_err(|e| setup("finding a port", &e))?;
        let peer_port = free_port().map_err(|e| setup("finding a port", &e))?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        procs.push(Proc::spawn(
            &bin.join("etcd"),
            &[
                "--name=kitsync-test".into(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=kitsync-test={peer_url}"),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
            &dir.join("logs/etcd.log"),
        )?);

        let port = free_port().map_err(|e| setup("finding a port", &e))?;
        let server = format!("https://127.0.0.1:{port}");
        let path = |name: &str| dir.join(name).display().to_string();
        procs.push(Proc::spawn(
            &bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", path("pki")),
                format!("--tls-cert-file={}", path("pki/apiserver.crt")),
                format!("--tls-private-key-file={}", path("pki/apiserver.key")),
                format!("--client-ca-file={}", path("pki/ca.crt")),
                format!("--token-auth-file={}", path("tokens.csv")),
                "--authorization-mode=RBAC".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", path("pki/sa.pub")),
                format!("--service-account-signing-key-file={}", path("pki/sa.key")),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                "--allow-privileged=true".into(),
                format!("--audit-policy-file={}", path("audit-policy.yaml")),
                format!("--audit-log-path={}", audit_log.display()),
                "--audit-log-format=json".into(),
                "--audit-log-mode=blocking".into(),
                "--enable-priority-and-fairness=false".into(),
                "--v=0".into(),
            ],
            &dir.join("logs/kube-apiserver.log"),
        )?);

        let kubeconfig = dir.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &server, &pki.ca_pem, &admin_token, &user_tokens)
            .map_err(|e| setup("writing kubeconfig", &e))?;

        let mut plane = ControlPlane {
            state,
            server,
            kubeconfig,
            audit_log,
            admin_token,
            startup: Duration::ZERO,
            procs,
            watchdog: None,
        };
        plane.replace_watchdog();
        plane.wait_ready(Duration::from_secs(90))?;

        let controller_kubeconfig = plane.kubeconfig.display().to_string();
        plane.procs.push(Proc::spawn(
            &bin.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={controller_kubeconfig}"),
                format!("--authentication-kubeconfig={controller_kubeconfig}"),
                format!("--authorization-kubeconfig={controller_kubeconfig}"),
                "--controllers=namespace,garbagecollector,serviceaccount,serviceaccount-token".into(),
                format!("--service-account-private-key-file={}", path("pki/sa.key")),
                format!("--root-ca-file={}", path("pki/ca.crt")),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!(
                    "--secure-port={}",
                    free_port().map_err(|e| setup("finding a port", &e))?
                ),
                format!("--cert-dir={}", path("pki/controller-manager")),
                "--v=0".into(),
            ],
            &dir.join("logs/kube-controller-manager.log"),
        )?);
        plane.replace_watchdog();
        std::thread::sleep(Duration::from_millis(200));
        plane.check_alive()?;
        plane.startup = started.elapsed();
        Ok(plane)
    }

    fn replace_watchdog(&mut self) {
        if let Some(mut old) = self.watchdog.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        self.watchdog = process::watchdog(&self.procs);
    }

    /// Polls `/readyz` with the admin token until it answers `ok`.
    fn wait_ready(&self, limit: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + limit;
        let kubeconfig = self.kubeconfig.clone();
        let probe = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = admin_client_from(&kubeconfig).await.map_err(|e| e.to_string())?;
                let mut last = String::from("no answer");
                while Instant::now() < deadline {
                    let request = http::Request::get("/readyz")
                        .body(Vec::new())
                        .map_err(|e| e.to_string())?;
                    match client.request_text(request).await {
                        Ok(body) if body.trim() == "ok" => return Ok(()),
                        Ok(body) => last = body,
                        Err(e) => last = e.to_string(),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(last)
            })
        });
        loop {
            self.check_alive()?;
            if probe.is_finished() {
                let result = probe
                    .join()
                    .unwrap_or_else(|_| Err("the readiness probe panicked".into()));
                return result.map_err(|last| {
                    let apiserver = &self.procs[1];
                    Error::Process {
                        name: "kube-apiserver".into(),
                        what: format!("not ready after {limit:?} (last /readyz answer: {last})"),
                        log: apiserver.log.display().to_string(),
                        tail: tail(&apiserver.log, 20),
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An error for the first process that has exited.
    fn check_alive(&self) -> Result<(), Error> {
        for proc in &self.procs {
            proc.check_alive()?;
        }
        Ok(())
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// A kubeconfig with contexts `admin` (current), `alice` and `bob`.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The bearer token of the admin (group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The apiserver's audit log (JSON lines, one per write request).
    pub fn audit_log_path(&self) -> &Path {
        &self.audit_log
    }

    /// The state directory (logs under `logs/`).
    pub fn dir(&self) -> &Path {
        self.state.path()
    }

    /// From spawning etcd to a ready apiserver with the controller manager running.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// A kube config for the admin.
    pub async fn config(&self) -> Result<kube::Config, Error> {
        self.config_for("admin").await
    }

    /// A kube config for one of the kubeconfig's contexts: `admin`, `alice` or `bob`.
    pub async fn config_for(&self, context: &str) -> Result<kube::Config, Error> {
        config_from(&self.kubeconfig, context).await
    }

    /// An admin client.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        client_of(self.config().await?)
    }

    /// A client authenticated as `user` (`alice` or `bob`), who has no rights by default.
    pub async fn user_client(&self, user: &str) -> Result<kube::Client, Error> {
        client_of(self.config_for(user).await?)
    }

    /// An admin client that impersonates `user` with `groups`, e.g.
    /// `system:serviceaccount:NS:NAME` with `system:serviceaccounts`.
    pub async fn impersonating_client(&self, user: &str, groups: &[&str]) -> Result<kube::Client, Error> {
        let mut config = self.config().await?;
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
        client_of(config)
    }

    /// Creates a namespace named `PREFIX-N` that no other test uses, and returns its name.
    pub async fn namespace(&self, prefix: &str) -> Result<String, Error> {
        use k8s_openapi::api::core::v1::Namespace;
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let api: kube::Api<Namespace> = kube::Api::all(self.client().await?);
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"kitsync.dev/test": "true"}}
        }))
        .map_err(|e| Error::Setup(e.to_string()))?;
        api.create(&Default::default(), &namespace)
            .await
            .map_err(|e| Error::Setup(format!("creating namespace {name}: {e}")))?;
        Ok(name)
    }

    /// Stops every process (also done on drop).
    pub fn stop(&mut self) {
        for proc in self.procs.iter_mut().rev() {
            proc.stop();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn client_of(config: kube::Config) -> Result<kube::Client, Error> {
    kube::Client::try_from(config).map_err(|e| Error::Setup(format!("kube client: {e}")))
}

async fn config_from(kubeconfig: &Path, context: &str) -> Result<kube::Config, Error> {
    let text = std::fs::read_to_string(kubeconfig)
        .map_err(|e| Error::Setup(format!("{}: {e}", kubeconfig.display())))?;
    let parsed =
        Kubeconfig::from_yaml(&text).map_err(|e| Error::Setup(format!("{}: {e}", kubeconfig.display())))?;
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..KubeConfigOptions::default()
    };
    kube::Config::from_custom_kubeconfig(parsed, &options)
        .await
        .map_err(|e| Error::Setup(format!("{} context {context}: {e}", kubeconfig.display())))
}

async fn admin_client_from(kubeconfig: &Path) -> Result<kube::Client, Error> {
    client_of(config_from(kubeconfig, "admin").await?)
}

fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    admin_token: &str,
    users: &[(&str, String)],
) -> std::io::Result<()> {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n  - name: kitsync-test\n    cluster:\n      server: {server}\n      certificate-authority-data: {ca}\ncurrent-context: admin\ncontexts:\n"
    );
    let names: Vec<&str> = std::iter::once("admin")
        .chain(users.iter().map(|(u, _)| *u))
        .collect();
    for name in &names {
        text.push_str(&format!(
            "  - name: {name}\n    context:\n      cluster: kitsync-test\n      user: {name}\n      namespace: default\n"
        ));
    }
    text.push_str("users:\n");
    text.push_str(&format!(
        "  - name: admin\n    user:\n      token: {admin_token}\n"
    ));
    for (user, token) in users {
        text.push_str(&format!("  - name: {user}\n    user:\n      token: {token}\n"));
    }
    write_private(path, &text)
}

/// Writes a file only the owner can read (it holds tokens or keys).
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}
