;; WASI preview1 for a Go policy, without WASI: the functions Go's wasip1 runtime imports,
;; answered inside the component, so that it imports kitsync:plugin and nothing else (as
;; componentize-py's --stub-wasi does for Python). ./build turns this into a wit-component
;; adapter (`wasm-tools component new --adapt wasi_snapshot_preview1=...`).
;;
;; What Go sees: no arguments, no environment, no preopened directories (every descriptor is
;; EBADF), the wall clock at the Unix epoch (as in kitsync's own sandbox), a monotonic clock
;; that starts at 1 s and moves 1 us per reading and by the length of every sleep (Go's
;; runtime refuses a monotonic clock that reads 0), sleeps that end at once, one fixed random
;; sequence per instance, and stdout and stderr swallowed. All of it is the same on every run.
;; proc_exit (a Go panic or os.Exit) traps.
(module
  (import "env" "memory" (memory 0))
  ;; State of the random sequence (xorshift32), restarted with every instance.
  (global $rand (mut i32) (i32.const 0x6b697473))
  ;; The monotonic clock, in nanoseconds.
  (global $mono (mut i64) (i64.const 1000000000))

  (func (export "sched_yield") (result i32) (i32.const 0))
  (func (export "proc_exit") (param i32) (unreachable))
  (func (export "args_get") (param i32 i32) (result i32) (i32.const 0))
  (func (export "args_sizes_get") (param $argc i32) (param $size i32) (result i32)
    (i32.store (local.get $argc) (i32.const 0))
    (i32.store (local.get $size) (i32.const 0))
    (i32.const 0))
  (func (export "environ_get") (param i32 i32) (result i32) (i32.const 0))
  (func (export "environ_sizes_get") (param $count i32) (param $size i32) (result i32)
    (i32.store (local.get $count) (i32.const 0))
    (i32.store (local.get $size) (i32.const 0))
    (i32.const 0))
  ;; Clock 0 is the wall clock, every other one monotonic.
  (func (export "clock_time_get") (param $id i32) (param i64) (param $time i32) (result i32)
    (if (i32.eqz (local.get $id))
      (then (i64.store (local.get $time) (i64.const 0)))
      (else
        (global.set $mono (i64.add (global.get $mono) (i64.const 1000)))
        (i64.store (local.get $time) (global.get $mono))))
    (i32.const 0))
  ;; Everything written counts as written, and goes nowhere.
  (func (export "fd_write") (param $fd i32) (param $iovs i32) (param $count i32) (param $written i32)
    (result i32)
    (local $total i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $count)))
        (local.set $total
          (i32.add (local.get $total) (i32.load offset=4 (local.get $iovs))))
        (local.set $iovs (i32.add (local.get $iovs) (i32.const 8)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $next)))
    (i32.store (local.get $written) (local.get $total))
    (i32.const 0))
  (func (export "random_get") (param $buf i32) (param $len i32) (result i32)
    (local $x i32)
    (local.set $x (global.get $rand))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $len)))
        (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 13))))
        (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 17))))
        (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 5))))
        (i32.store8 (local.get $buf) (local.get $x))
        (local.set $buf (i32.add (local.get $buf) (i32.const 1)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br $next)))
    (global.set $rand (local.get $x))
    (i32.const 0))
  ;; Every subscription (48 bytes: userdata u64, tag u8 at 8, then for a clock: timeout u64 at
  ;; 24, flags u16 at 40) fires at once as an event (32 bytes: userdata, error u16 at 8 = 0,
  ;; type u8 at 10); a relative clock subscription moves the monotonic clock by its timeout.
  (func (export "poll_oneoff") (param $in i32) (param $out i32) (param $count i32) (param $events i32)
    (result i32)
    (i32.store (local.get $events) (local.get $count))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $count)))
        (i64.store (local.get $out) (i64.load (local.get $in)))
        (i32.store16 offset=8 (local.get $out) (i32.const 0))
        (i32.store8 offset=10 (local.get $out) (i32.load8_u offset=8 (local.get $in)))
        (i64.store offset=16 (local.get $out) (i64.const 0))
        (i64.store offset=24 (local.get $out) (i64.const 0))
        (if (i32.and
              (i32.eqz (i32.load8_u offset=8 (local.get $in)))
              (i32.eqz (i32.load16_u offset=40 (local.get $in))))
          (then
            (global.set $mono (i64.add (global.get $mono) (i64.load offset=24 (local.get $in))))))
        (local.set $in (i32.add (local.get $in) (i32.const 48)))
        (local.set $out (i32.add (local.get $out) (i32.const 32)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $next)))
    (i32.const 0))
  ;; EBADF: there are no descriptors (and so no preopened directories).
  (func (export "fd_close") (param i32) (result i32) (i32.const 8))
  (func (export "fd_fdstat_get") (param i32 i32) (result i32) (i32.const 8))
  (func (export "fd_fdstat_set_flags") (param i32 i32) (result i32) (i32.const 8))
  (func (export "fd_prestat_get") (param i32 i32) (result i32) (i32.const 8))
  (func (export "fd_prestat_dir_name") (param i32 i32 i32) (result i32) (i32.const 8))
)
