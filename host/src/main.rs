//! The `kitsync` binary: parse arguments, run, map the outcome to an exit status.

use clap::Parser;
use kitsync::cli::{self, Cli, LogFormat, Outcome};
use std::io::IsTerminal;
use std::process::ExitCode;

// Why, and its settings: `kitsync::allocator`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc reserves its first arena at the first allocation, which can come before `main`:
// its settings are applied from the process's constructors.
#[cfg(target_os = "linux")]
#[used]
#[allow(unsafe_code)] // a constructor: the only way to run before the first allocation
#[unsafe(link_section = ".init_array")]
static CONFIGURE_ALLOCATOR: extern "C" fn() = configure_allocator;

#[cfg(target_os = "linux")]
extern "C" fn configure_allocator() {
    kitsync::allocator::configure();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The service's log is its record of what it did; one-shot commands print results instead.
    let default = match cli.command {
        kitsync::cli::Command::Serve(_) => "info,kube_runtime=warn",
        _ => "warn",
    };
    init_logging(cli.log_format, cli.log.as_deref().unwrap_or(default));
    match cli::run(cli) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        // The reader went away (`kitsync render | head -1`): stop quietly, as `cat` would.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole cause chain on one line: what failed and why.
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
