//! Hostile plugins are stopped with the right error, in time, and the host carries on.

use super::{VISION, engine, engine_with, load, objects};
use kitsync::Severity;
use kitsync::plugin::{CodeSource, Engine, EngineConfig, ErrorKind, Limits, Phase};
use kitsync_test_artifacts as artifacts;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// After a hostile plugin, a well-behaved one must run at once on the same engine.
fn host_still_healthy(engine: &kitsync::plugin::Engine) {
    let plugin = load(engine, artifacts::REQUIRED_LABELS);
    let policy = plugin
        .configure(&serde_json::json!({"labels": ["app.kubernetes.io/name"]}))
        .expect("config accepted");
    let started = Instant::now();
    let findings = policy
        .validate(&objects("vision.yaml", VISION))
        .expect("validator runs");
    assert!(findings.is_empty(), "{findings:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "next plugin was slow: {:?}",
        started.elapsed()
    );
}

#[test]
fn infinite_loop_is_stopped_at_the_deadline() {
    let deadline = Duration::from_millis(300);
    let engine = engine_with(Limits {
        deadline,
        ..Limits::default()
    });
    let plugin = load(&engine, artifacts::HOSTILE_LOOP);
    let policy = plugin
        .configure(&Value::Null)
        .expect("config")
        .for_kit("smithereens");
    let started = Instant::now();
    let err = policy
        .validate(&objects("vision.yaml", VISION))
        .expect_err("loop must be stopped");
    let elapsed = started.elapsed();
    assert!(matches!(err.kind, ErrorKind::Deadline { ms: 300, .. }), "{err}");
    assert_eq!(err.kit.as_deref(), Some("smithereens"));
    assert_eq!(err.phase, Phase::Validate);
    assert!(err.to_string().contains("deadline of 300 ms exceeded"), "{err}");
    assert!(elapsed >= deadline, "stopped before the deadline: {elapsed:?}");
    // Within a tick or two of the deadline on an idle machine; the slack is for a loaded
    // 2-core CI machine running the whole suite at once (it once took 250+ ms more there).
    assert!(
        elapsed < deadline + Duration::from_millis(1000),
        "stopped too late: {elapsed:?}"
    );
    host_still_healthy(&engine);
}

#[test]
fn memory_bomb_hits_the_cap() {
    let plugin = load(engine(), artifacts::HOSTILE_MEMBOMB);
    let policy = plugin.configure(&Value::Null).expect("config");
    let started = Instant::now();
    let err = policy
        .validate(&objects("vision.yaml", VISION))
        .expect_err("1 GiB must be refused");
    assert!(matches!(err.kind, ErrorKind::MemoryLimit { mib: 64 }), "{err}");
    assert!(
        err.to_string().contains("memory limit of 64 MiB exceeded"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    host_still_healthy(engine());
}

#[test]
fn panic_is_a_trap_with_its_message() {
    let plugin = load(engine(), artifacts::HOSTILE_PANIC);
    let policy = plugin.configure(&Value::Null).expect("config");
    let err = policy
        .validate(&objects("vision.yaml", VISION))
        .expect_err("panic traps");
    match &err.kind {
        ErrorKind::Trap { message } => {
            assert!(message.contains("hostile panic: boom"), "{message}")
        }
        other => panic!("expected a trap, got {other}"),
    }
    host_still_healthy(engine());
}

#[test]
fn stdout_flood_is_cut_at_the_cap() {
    let plugin = load(engine(), artifacts::HOSTILE_STDOUT);
    let policy = plugin.configure(&Value::Null).expect("config");
    let started = Instant::now();
    let err = policy
        .validate(&objects("vision.yaml", VISION))
        .expect_err("100 MB of stdout");
    assert!(
        matches!(err.kind, ErrorKind::OutputLimit { stream: "stdout", limit } if limit == 1 << 20),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    host_still_healthy(engine());
}

#[test]
fn file_system_is_empty() {
    let plugin = load(engine(), artifacts::HOSTILE_FS);
    assert!(plugin.imports().iter().any(|i| i.starts_with("wasi:filesystem/")));
    let policy = plugin.configure(&Value::Null).expect("config");
    let findings = policy.validate(&objects("vision.yaml", VISION)).expect("runs");
    assert!(!findings.is_empty(), "the plugin reports what it saw");
    for finding in &findings {
        assert_eq!(finding.severity, Severity::Info);
        // /etc/passwd always starts with the root entry; it must never be read.
        assert!(
            !finding.message.contains("root:"),
            "file content leaked: {}",
            finding.message
        );
    }
}

#[test]
fn sockets_are_refused_at_load() {
    let bytes = artifacts::bytes(artifacts::HOSTILE_NET);
    let err = engine()
        .load("hostile_net.wasm", &bytes, None)
        .expect_err("sockets are forbidden");
    match &err.kind {
        ErrorKind::ForbiddenImport { import } => {
            assert!(import.starts_with("wasi:sockets/"), "{import}")
        }
        other => panic!("expected a forbidden import, got {other}"),
    }
    assert_eq!(err.phase, Phase::Load);
    assert!(
        err.to_string().contains("forbidden import wasi:sockets/"),
        "{err}"
    );
}

#[test]
fn garbage_output_is_refused() {
    let plugin = load(engine(), artifacts::HOSTILE_GARBAGE);
    let input = objects("vision.yaml", VISION);

    let policy = plugin
        .configure(&serde_json::json!({"mode": "bad-json"}))
        .expect("config");
    let err = policy.transform(&input).expect_err("not JSON");
    assert!(
        matches!(err.kind, ErrorKind::OutputNotJson { index: 0, .. }),
        "{err}"
    );

    let policy = plugin
        .configure(&serde_json::json!({"mode": "no-identity"}))
        .expect("config");
    let err = policy.transform(&input).expect_err("no name");
    assert!(err.to_string().contains("has no metadata.name"), "{err}");
}

#[test]
fn digest_mismatch_names_both_digests() {
    let bytes = artifacts::bytes(artifacts::REQUIRED_LABELS);
    let actual = kitsync::plugin::sha256_hex(&bytes);
    let wrong = "0".repeat(64);
    let err = engine()
        .load("required_labels.wasm", &bytes, Some(&wrong))
        .expect_err("mismatch");
    match &err.kind {
        ErrorKind::DigestMismatch {
            expected,
            actual: got,
        } => {
            assert_eq!(expected, &wrong);
            assert_eq!(got, &actual);
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
    let ok = engine().load("required_labels.wasm", &bytes, Some(&format!("sha256:{actual}")));
    assert!(ok.is_ok(), "the right pin is accepted");
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let err = engine().load("junk.wasm", b"\0asm junk", None).expect_err("junk");
    assert!(matches!(err.kind, ErrorKind::Compile(_)), "{err}");
}

/// An engine caching compiled code in `dir` (its key file is `dir` + `.key`).
fn caching_engine(dir: &Path) -> Engine {
    Engine::new(EngineConfig {
        cache_dir: Some(dir.to_owned()),
        ..Default::default()
    })
    .expect("engine")
}

/// Loads the port-range plugin at `path` and checks that it runs, returning where its
/// code came from.
fn load_and_run(engine: &Engine, path: &str) -> CodeSource {
    let plugin = load(engine, path);
    let policy = plugin
        .configure(&serde_json::json!({"min": 1, "max": 65535}))
        .expect("config");
    policy
        .validate(&objects("vision.yaml", VISION))
        .expect("the plugin runs");
    plugin.code_source()
}

/// The one cache file of the component `bytes`.
fn artefact_of(dir: &Path, bytes: &[u8]) -> PathBuf {
    let sha = kitsync::plugin::sha256_hex(bytes);
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("cache dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&sha) && n.ends_with(".cwasm"))
        })
        .collect();
    assert_eq!(found.len(), 1, "one compiled artefact for {sha}: {found:?}");
    found.into_iter().next().expect("checked")
}

#[test]
fn a_corrupt_cache_entry_is_recompiled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("plugins");
    let engine = caching_engine(&dir);
    let bytes = artifacts::bytes(artifacts::PORT_RANGE);
    engine
        .load("port_range.wasm", &bytes, None)
        .expect("first load compiles");
    let path = artefact_of(&dir, &bytes);
    std::fs::write(&path, b"not machine code").expect("corrupt it");
    let plugin = engine.load("port_range.wasm", &bytes, None).expect("recompiles");
    assert_eq!(plugin.metadata().name, "port-range");
    assert_eq!(plugin.code_source(), CodeSource::Compiled);
}

/// Issue 10, class 5: a cache file is loaded only if it is this host's compilation of
/// this very component; anything else is recompiled (and rewritten), never loaded.
#[test]
fn cached_code_is_bound_to_its_component_and_this_host() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("plugins");
    let engine = caching_engine(&dir);
    let bytes = artifacts::bytes(artifacts::PORT_RANGE);
    assert_eq!(load_and_run(&engine, artifacts::PORT_RANGE), CodeSource::Compiled);
    assert_eq!(load_and_run(&engine, artifacts::PORT_RANGE), CodeSource::Cache);
    let path = artefact_of(&dir, &bytes);
    let key = kitsync::plugin::CodeCache::key_path(&dir);
    assert!(
        key.is_file(),
        "the key lives next to, not in, the cache directory"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");
    }

    // Each case leaves a bad file; the next load must recompile, run, and write a good
    // file that the load after it maps again.
    let recompiles = |what: &str| {
        assert_eq!(
            load_and_run(&engine, artifacts::PORT_RANGE),
            CodeSource::Compiled,
            "{what}: must not be loaded"
        );
        assert_eq!(
            load_and_run(&engine, artifacts::PORT_RANGE),
            CodeSource::Cache,
            "{what}: the rewritten file is used"
        );
    };

    // (a) One flipped byte in the machine code.
    let mut data = std::fs::read(&path).expect("read");
    let middle = data.len() / 2;
    data[middle] ^= 0x01;
    std::fs::write(&path, &data).expect("tamper");
    recompiles("tampered");

    // (b) Truncated.
    let data = std::fs::read(&path).expect("read");
    std::fs::write(&path, &data[..data.len() / 2]).expect("truncate");
    recompiles("truncated");
    std::fs::write(&path, &data[..10]).expect("truncate into the header");
    recompiles("truncated header");

    // (c) Another plugin's artefact, complete with its own valid MAC, in this one's place.
    let other = artifacts::bytes(artifacts::REQUIRED_LABELS);
    load(&engine, artifacts::REQUIRED_LABELS);
    std::fs::copy(artefact_of(&dir, &other), &path).expect("swap");
    let plugin = engine.load("port_range.wasm", &bytes, None).expect("loads");
    assert_eq!(
        plugin.code_source(),
        CodeSource::Compiled,
        "swapped: must not be loaded"
    );
    assert_eq!(plugin.metadata().name, "port-range", "and it is still port-range");
    assert_eq!(
        load_and_run(&engine, artifacts::PORT_RANGE),
        CodeSource::Cache,
        "swapped: the rewritten file is used"
    );

    // (d) The MAC removed: the bare Wasmtime artefact (also what older versions wrote).
    // The header is 16 bytes of magic and a 32-byte MAC (plugin/cache.rs).
    let data = std::fs::read(&path).expect("read");
    assert!(
        data[48..].starts_with(b"\x7fELF"),
        "the code after the header is an ELF image"
    );
    std::fs::write(&path, &data[48..]).expect("strip the MAC");
    recompiles("MAC-less");

    // (e) A file another host wrote: the same bytes, checked under a different key.
    drop(engine);
    let data = std::fs::read(&path).expect("read");
    std::fs::write(&key, [7u8; 32]).expect("another key");
    let engine = caching_engine(&dir);
    assert_eq!(
        std::fs::read(&path).expect("read"),
        data,
        "the artefact is untouched"
    );
    assert_eq!(
        load_and_run(&engine, artifacts::PORT_RANGE),
        CodeSource::Compiled,
        "foreign host: must not be loaded"
    );
    assert_eq!(load_and_run(&engine, artifacts::PORT_RANGE), CodeSource::Cache);
}

#[cfg(unix)]
#[test]
fn a_cache_key_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("plugins");
    drop(caching_engine(&dir));
    let key = kitsync::plugin::CodeCache::key_path(&dir);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let err = Engine::new(EngineConfig {
        cache_dir: Some(dir.clone()),
        ..Default::default()
    })
    .err()
    .expect("a group-readable key is refused");
    let message = err.to_string();
    assert!(message.contains("plugins.key"), "{message}");
    assert!(message.contains("group or others"), "{message}");
}

/// Issue 10, class 6: no wall clock and no randomness that differs between runs.
#[test]
fn clock_and_randomness_are_fixed() {
    let run = |engine: &Engine| {
        let plugin = load(engine, artifacts::HOSTILE_CLOCK);
        let policy = plugin.configure(&Value::Null).expect("config");
        let findings = policy.validate(&objects("vision.yaml", VISION)).expect("runs");
        assert_eq!(findings.len(), 1, "{findings:?}");
        findings[0].message.clone()
    };
    let first = run(engine());
    // A fresh instance on the same engine, then on another engine (as another process).
    assert_eq!(run(engine()), first);
    assert_eq!(run(&engine_with(Limits::default())), first);

    let field = |name: &str| {
        first
            .split(' ')
            .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {first}"))
            .to_owned()
    };
    assert_eq!(field("wall"), "0.000000000", "the wall clock is the Unix epoch");
    assert_eq!(field("monotonic"), "0", "the monotonic clock does not move");
    let random = field("random");
    assert!(
        random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit()),
        "random bytes are served, not refused: {first}"
    );
    assert_ne!(random, "0".repeat(32));
    assert_eq!(field("hash").len(), 16, "{first}");
}

#[test]
fn calls_run_concurrently_in_fresh_instances() {
    let plugin = load(engine(), artifacts::REQUIRED_LABELS);
    let policy = plugin
        .configure(&serde_json::json!({"labels": ["team"]}))
        .expect("config");
    let input = objects("vision.yaml", VISION);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| policy.validate(&input).expect("runs").len()))
            .collect();
        for handle in handles {
            assert_eq!(handle.join().expect("thread"), 2, "both objects lack `team`");
        }
    });
}

/// Kits render in parallel and each kit's validators run in parallel, so more calls can be
/// in flight than the pool has instance slots: a call waits for a slot instead of failing.
#[test]
fn more_concurrent_calls_than_instance_slots_all_run() {
    let engine = Engine::new(EngineConfig {
        max_instances: 2,
        cache_dir: Some(super::cache_dir()),
        ..EngineConfig::default()
    })
    .expect("engine starts");
    let plugin = load(&engine, artifacts::REQUIRED_LABELS);
    let policy = plugin
        .configure(&serde_json::json!({"labels": ["team"]}))
        .expect("config");
    let input = objects("vision.yaml", VISION);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                scope.spawn(|| {
                    (0..5)
                        .map(|_| policy.validate(&input).map(|f| f.len()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for outcome in handle.join().expect("thread") {
                assert_eq!(outcome.expect("no call is refused for want of a slot"), 2);
            }
        }
    });
}

#[test]
fn a_validator_cannot_be_used_as_a_transformer() {
    let plugin = load(engine(), artifacts::REQUIRED_LABELS);
    let policy = plugin
        .configure(&serde_json::json!({"labels": ["team"]}))
        .expect("config");
    let err = policy.transform(&[]).expect_err("wrong world");
    assert!(
        err.to_string().contains("is a validator, not a transformer"),
        "{err}"
    );
}

#[test]
fn a_plugin_for_another_major_contract_version_is_refused_at_load_saying_why() {
    let bytes = super::built_for(&artifacts::bytes(artifacts::REQUIRED_LABELS), "0.2.0");
    let err = engine()
        .load("future.wasm", &bytes, None)
        .expect_err("0.2 is not 0.1");
    assert!(
        matches!(err.kind, ErrorKind::IncompatibleContract { .. }),
        "{err}"
    );
    assert_eq!(err.phase, Phase::Load);
    let text = err.to_string();
    for needle in [
        "plugin future.wasm: load: built for kitsync:plugin@0.2.0",
        "implements kitsync:plugin@0.1.0",
        "built for 0.1.x only",
    ] {
        assert!(text.contains(needle), "wanted {needle:?} in {text}");
    }
}

#[test]
fn a_plugin_for_a_newer_compatible_contract_version_loads() {
    // 0.1.9 only adds what this plugin does not use: semver says it runs on a 0.1.0 host.
    let bytes = super::built_for(&artifacts::bytes(artifacts::REQUIRED_LABELS), "0.1.9");
    let plugin = engine()
        .load("newer.wasm", &bytes, None)
        .unwrap_or_else(|e| panic!("a 0.1.9 plugin loads on 0.1.0: {e}"));
    assert!(
        plugin.imports().iter().any(|i| i == "kitsync:plugin/types@0.1.9"),
        "{:?}",
        plugin.imports()
    );
    let findings = plugin
        .configure(&serde_json::json!({"labels": ["team"]}))
        .expect("config")
        .validate(&objects("vision.yaml", VISION))
        .expect("runs");
    assert_eq!(findings.len(), 2, "{findings:?}");
}
