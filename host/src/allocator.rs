//! The `kitsync` binary's allocator settings.
//!
//! The binary allocates with mimalloc: a render allocates and frees a small map per JSON
//! member, and glibc's malloc spent a fifth of a render doing so (perf, plugins bench).
//! mimalloc's defaults commit whole arenas eagerly on Linux, which kept a watching service at
//! 175 MiB where glibc peaks at 96 MiB (serve bench, 100 kits x 100 objects); committing on
//! demand brings it to 95-101 MiB at no measurable cost to renders. [`configure`] sets that.

/// Option numbers of mimalloc 3 (`mi_option_e` in `mimalloc.h`). The Rust bindings leave
/// these out as unstable, so the bindings' version is pinned exactly in Cargo.toml.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Applies the settings above. Call before the first allocation (the binary calls it from a
/// constructor; mimalloc reserves its first arena then, with the settings of that moment) and
/// before any thread starts (its option setters are not thread safe). An operator's
/// `MIMALLOC_*` environment variables still set the options this leaves alone.
#[allow(unsafe_code)] // the crate's one unsafe block: a foreign function without a safe wrapper
pub fn configure() {
    // SAFETY: plain setter of a process-wide option; called before other threads exist.
    unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
}
