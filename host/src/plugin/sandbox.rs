//! The sandbox a plugin runs in: per-call store state, resource limits, captured output.
//!
//! Every call gets a fresh [`State`]: a WASI context with no preopened directories,
//! no environment, no arguments, no sockets and no inherited stdio; stdout and stderr
//! go to capped in-memory pipes; memory growth is checked by [`Limiter`].
//!
//! The context is also deterministic, so a revision renders the same in review and in
//! the service: the wall clock always reads the Unix epoch, the monotonic clock always
//! reads 0, and `wasi:random` (secure and insecure, and the insecure seed std's
//! `HashMap` uses) yields one fixed sequence, restarted for every call. Plugins can
//! therefore not make secrets; they have nowhere to send them either.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

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

/// Seeds of the sandbox's randomness. Arbitrary, but fixed forever: changing one
/// changes the output of every plugin that draws random numbers.
const SECURE_SEED: u64 = 0x6b69_7473_796e_6301; // "kitsync" + 1
const INSECURE_SEED: u64 = 0x6b69_7473_796e_6302;
/// What `wasi:random/insecure-seed` returns (Rust std seeds `HashMap` with it).
const HASH_SEED: u128 = 0x6b69_7473_796e_6303_6b69_7473_796e_6303;

/// The sandbox's clocks: wall time is always the Unix epoch, monotonic time always 0.
///
/// Sleeping (`subscribe-duration`) still waits for real, under the call's deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        // Since the Unix epoch: 1970-01-01T00:00:00Z.
        Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

/// A fixed-seed generator (SplitMix64): the same numbers in every call, every process
/// and every kitsync version (the algorithm is written out here rather than borrowed
/// from a crate whose generator may change). Not secure, by design.
#[derive(Debug, Clone)]
pub(crate) struct FixedRandom {
    state: u64,
}

impl FixedRandom {
    pub(crate) fn new(seed: u64) -> Self {
        FixedRandom { state: seed }
    }

    fn step(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl rand_core::TryRng for FixedRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        // The high half of a 64-bit output: the better-mixed bits.
        Ok((self.step() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.step())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let word = self.step().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(())
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
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(FixedRandom::new(SECURE_SEED))
            .insecure_random(FixedRandom::new(INSECURE_SEED))
            .insecure_random_seed(HASH_SEED)
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
    fn fixed_random_is_splitmix64_and_repeats() {
        use rand_core::Rng as _;
        // Reference values of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut rng = FixedRandom::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let mut a = [0u8; 13];
        let mut b = [0u8; 13];
        FixedRandom::new(SECURE_SEED).fill_bytes(&mut a);
        FixedRandom::new(SECURE_SEED).fill_bytes(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, [0u8; 13]);
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
