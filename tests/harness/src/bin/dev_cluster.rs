//! `kitsync-dev-cluster`: the tests' control plane for local experiments, in the foreground.

use clap::Parser;
use kitsync_harness::{ControlPlane, Options};
use std::path::PathBuf;

/// Runs a real etcd, kube-apiserver and kube-controller-manager on 127.0.0.1 until Ctrl-C,
/// and prints the kubeconfig to use with kubectl or kitsync.
///
/// Example:
///   tests/dev-cluster &
///   export KUBECONFIG=~/.local/state/kitsync/dev-cluster/kubeconfig
///   kubectl get namespaces
///
/// The binaries are built once from Go modules by tests/control-plane/build.sh (several
/// minutes the first time, then cached). The cluster's data is wiped at each start.
#[derive(Debug, Parser)]
#[command(name = "kitsync-dev-cluster", verbatim_doc_comment)]
struct Args {
    /// State directory: kubeconfig, certificates, logs and etcd data.
    /// Default: $XDG_STATE_HOME/kitsync/dev-cluster (~/.local/state/kitsync/dev-cluster).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Directory with the etcd, kube-apiserver and kube-controller-manager binaries
    /// (default: built or found by tests/control-plane/build.sh).
    #[arg(long, env = "KITSYNC_CONTROL_PLANE_BIN")]
    bin_dir: Option<PathBuf>,
}

fn default_dir() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("kitsync/dev-cluster"))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let Some(dir) = args.dir.or_else(default_dir) else {
        eprintln!("error: no state directory: pass --dir or set HOME");
        return std::process::ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: creating {}: {e}", dir.display());
        return std::process::ExitCode::from(2);
    }
    eprintln!(
        "starting etcd, kube-apiserver and kube-controller-manager (state in {})",
        dir.display()
    );
    let mut plane = match ControlPlane::start(Options {
        dir: Some(dir),
        bin_dir: args.bin_dir,
    }) {
        Ok(plane) => plane,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    eprintln!(
        "control plane ready in {:.1?} at {}",
        plane.startup_time(),
        plane.server_url()
    );
    eprintln!("logs: {}", plane.dir().join("logs").display());
    eprintln!("stop with Ctrl-C. To use it:");
    println!("export KUBECONFIG={}", plane.kubeconfig_path().display());

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    });
    eprintln!("stopping");
    plane.stop();
    std::process::ExitCode::SUCCESS
}
