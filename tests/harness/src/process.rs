//! Child processes with their logs, and the watchdog that stops them when the test
//! process is gone (libtest exits without running destructors of statics).

use crate::Error;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running control-plane process.
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) log: PathBuf,
    child: Child,
}

impl Proc {
    pub(crate) fn spawn(binary: &Path, args: &[String], log: &Path) -> Result<Proc, Error> {
        let name = binary.file_name().map_or_else(
            || binary.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let spawn_error = |what: String| Error::Process {
            name: name.clone(),
            what,
            log: log.display().to_string(),
            tail: String::new(),
        };
        let out = std::fs::File::create(log).map_err(|e| spawn_error(format!("log file: {e}")))?;
        let err = out
            .try_clone()
            .map_err(|e| spawn_error(format!("log file: {e}")))?;
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| spawn_error(format!("could not start {}: {e}", binary.display())))?;
        Ok(Proc {
            name,
            log: log.to_path_buf(),
            child,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error with the end of the log when the process has exited.
    pub(crate) fn check_alive(&self) -> Result<(), Error> {
        // `try_wait` needs `&mut`; ask the kernel instead, which also sees zombies as gone.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next());
        if matches!(state, None | Some("Z" | "X")) {
            return Err(Error::Process {
                name: self.name.clone(),
                what: "exited".into(),
                log: self.log.display().to_string(),
                tail: tail(&self.log, 20),
            });
        }
        Ok(())
    }

    /// SIGTERM, a moment's grace, then SIGKILL.
    pub(crate) fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").arg(self.pid().to_string()).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last `lines` lines of a log file.
pub fn tail(log: &Path, lines: usize) -> String {
    let text =
        std::fs::read_to_string(log).unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A shell loop that waits for this process to end, then stops `procs` (TERM, then KILL).
/// Replaces any earlier watchdog for the same processes.
pub(crate) fn watchdog(procs: &[Proc]) -> Option<Child> {
    let pids: Vec<String> = procs.iter().map(|p| p.pid().to_string()).collect();
    let pids = pids.join(" ");
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill {pids} 2>/dev/null; sleep 5; kill -9 {pids} 2>/dev/null",
        parent = std::process::id()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}
