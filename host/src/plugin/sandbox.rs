//! The sandbox a plugin runs in: per-call store state, resource limits, captured output.
//!
//! Every call gets a fresh [`State`]: a WASI context with no preopened directories,
//! no environment, no arguments, no sockets and no inherited stdio; stdout and stderr
//! go to capped in-memory pipes; memory growth is checked by [`Limiter`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the engine's epoch advances. Deadlines are rounded up to this.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-call limits of the sandbox.
///
/// Defaults: 64 MiB of linear memory, a 2 s deadline, 1 MiB each of stdout,
/// stderr and log output. Limits bound guest memory and guest time; they do not
/// bound host memory spent on the objects passed in or out (those are bounded by
/// the caller's input size limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory per instance, in MiB (default 64).
    pub memory_mib: u64,
    /// Wall-clock deadline per call (default 2 s), enforced by epoch interruption,
    /// so a call is stopped at most one [`EPOCH_TICK`] plus scheduling delay late.
    pub deadline: Duration,
    /// Cap, in bytes, on each of stdout, stderr and the `log` import per call (default 1 MiB).
    /// A guest that writes past it is stopped with an output-limit error.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 64,
            deadline: Duration::from_secs(2),
            output_bytes: 1 << 20,
        }
    }
}

impl Limits {
    /// The deadline expressed in epoch ticks: rounded up, plus one because the
    /// current tick may be almost over when the call starts.
    pub fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_nanos().max(1);
        let ticks = self.deadline.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// Store data for one call.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) plugin: Arc<str>,
    pub(crate) kit: Option<Arc<str>>,
    pub(crate) stdout: CappedPipe,
    pub(crate) stderr: CappedPipe,
    pub(crate) log_bytes: usize,
    pub(crate) log_cap: usize,
    /// Set when an output stream or the log ran past its cap.
    pub(crate) overflow: Option<&'static str>,
    /// Values redacted from whatever the plugin prints or logs.
    pub(crate) secrets: Option<Arc<crate::redact::SecretValues>>,
}

impl State {
    /// A deny-all sandbox for one call of `plugin`.
    pub(crate) fn new(plugin: Arc<str>, kit: Option<Arc<str>>, limits: &Limits) -> Self {
        let stdout = CappedPipe::new("stdout", limits.output_bytes);
        let stderr = CappedPipe::new("stderr", limits.output_bytes);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        State {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: limits.memory_bytes(),
                hit: false,
            },
            plugin,
            kit,
            stdout,
            stderr,
            log_bytes: 0,
            log_cap: limits.output_bytes,
            overflow: None,
            secrets: None,
        }
    }

    /// `text` without the kit's secret values.
    pub(crate) fn redacted(&self, text: &str) -> String {
        match &self.secrets {
            Some(secrets) => secrets.redact(text),
            None => text.to_owned(),
        }
    }

    /// Which stream, if any, overflowed its cap.
    pub(crate) fn overflowed(&self) -> Option<&'static str> {
        self.overflow
            .or_else(|| self.stdout.overflowed().then_some("stdout"))
            .or_else(|| self.stderr.overflowed().then_some("stderr"))
    }

    /// The last few hundred bytes of stderr, where a Rust guest's panic message lands.
    pub(crate) fn stderr_tail(&self) -> String {
        let captured = self.stderr.lock();
        let start = captured.bytes.len().saturating_sub(512);
        self.redacted(String::from_utf8_lossy(&captured.bytes[start..]).trim())
    }

    /// Sends what the guest printed to the host log, tagged with the plugin.
    pub(crate) fn flush_output(&self) {
        for (pipe, is_err) in [(&self.stdout, false), (&self.stderr, true)] {
            let bytes = pipe.take();
            if bytes.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            let kit = self.kit.as_deref().unwrap_or("");
            for line in text.lines() {
                let line = self.redacted(line);
                if is_err {
                    tracing::warn!(plugin = %self.plugin, kit, stream = "stderr", "{line}");
                } else {
                    tracing::info!(plugin = %self.plugin, kit, stream = "stdout", "{line}");
                }
            }
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Enforces the memory cap and remembers whether the guest hit it.
pub(crate) struct Limiter {
    memory_bytes: usize,
    pub(crate) hit: bool,
}

/// Table elements a guest may have; generous for Rust and C guests.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = true;
            // Trapping (not returning -1 to the guest) makes the failure certain and immediate.
            wasmtime::bail!("memory limit exceeded: wanted {desired} bytes");
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    overflowed: bool,
}

/// An in-memory stdout/stderr that keeps at most `cap` bytes and stops the guest past it.
#[derive(Clone)]
pub(crate) struct CappedPipe {
    name: &'static str,
    cap: usize,
    inner: Arc<Mutex<Captured>>,
}

impl CappedPipe {
    fn new(name: &'static str, cap: usize) -> Self {
        CappedPipe {
            name,
            cap,
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        // A poisoned lock only means a panic elsewhere mid-write; the bytes are still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.lock().bytes)
    }

    /// Appends what fits; returns false when the cap was crossed.
    fn append(&self, data: &[u8]) -> bool {
        let mut captured = self.lock();
        let room = self.cap.saturating_sub(captured.bytes.len());
        let take = room.min(data.len());
        captured.bytes.extend_from_slice(&data[..take]);
        if take < data.len() {
            captured.overflowed = true;
            return false;
        }
        true
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        if self.append(&bytes) {
            Ok(())
        } else {
            Err(StreamError::Trap(wasmtime::format_err!(
                "{} exceeded its cap of {} bytes",
                self.name,
                self.cap
            )))
        }
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always grant a write so an overflowing guest reaches `write` and is stopped
        // there, rather than seeing a closed stream it might ignore and spin on.
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.append(buf) {
            std::task::Poll::Ready(Ok(buf.len()))
        } else {
            std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "{} exceeded its cap",
                self.name
            ))))
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_ticks_round_up_and_add_one() {
        let limits = Limits {
            deadline: Duration::from_millis(2000),
            ..Limits::default()
        };
        assert_eq!(limits.deadline_ticks(), 201);
        let limits = Limits {
            deadline: Duration::from_millis(15),
            ..Limits::default()
        };
        assert_eq!(limits.deadline_ticks(), 3);
    }

    #[test]
    fn pipe_keeps_what_fits_and_flags_overflow() {
        let pipe = CappedPipe::new("stdout", 4);
        assert!(pipe.append(b"ab"));
        assert!(!pipe.append(b"cdef"));
        assert!(pipe.overflowed());
        assert_eq!(pipe.take(), b"abcd");
    }
}
