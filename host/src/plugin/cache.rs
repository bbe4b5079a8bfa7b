//! On-disk cache of compiled plugin code, keyed by component sha256 and engine compatibility.
//!
//! Compiling a component costs tens of milliseconds (much more in a debug build);
//! loading the cached machine code is cheap. Deserializing machine code is `unsafe`
//! because it is trusted to be what Wasmtime wrote, so a cache file is only loaded when
//! it is provably the compilation, by this host, of the component with the pinned digest:
//!
//! - the directory is created private (0700), files are written to a temporary name
//!   and renamed, and a file not owned by this user or writable by others is ignored;
//! - every file starts with a header carrying an HMAC-SHA256, under a random 32-byte
//!   key kept *outside* the cache directory (`<cache_dir>.key`, mode 0600), over the
//!   engine's compatibility hash, the component's sha256 and the compiled code. The
//!   bytes read are checked in constant time, and only those same bytes are handed to
//!   Wasmtime, so a file swapped after the check is never mapped.
//!
//! A tampered, truncated, foreign (another component's or another host's) or MAC-less
//! file is logged at warn with the plugin's name and recompiled, never loaded.

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use std::hash::{Hash, Hasher};
use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;

/// First bytes of every cache file: names the format, so a raw Wasmtime artefact
/// (what older versions wrote) is recognised as MAC-less rather than misread.
const MAGIC: &[u8; 16] = b"kitsync-cwasm-1\n";
/// Length of the HMAC-SHA256 tag that follows [`MAGIC`].
const MAC_LEN: usize = 32;
/// Header length: magic, then the tag; the compiled code follows.
const HEADER_LEN: usize = MAGIC.len() + MAC_LEN;
/// Domain separation: this key signs nothing else, but the MAC says what it binds.
const MAC_CONTEXT: &[u8] = b"kitsync plugin code cache v1\0";
/// Length of the key in `<cache_dir>.key`.
const KEY_LEN: usize = 32;
/// Compiled plugins are a few MB; a larger file is not ours and is not read into memory.
const MAX_ARTEFACT_BYTES: u64 = 256 << 20;

/// Where a loaded component's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSource {
    /// Loaded from a cache file whose MAC verified.
    Cache,
    /// Compiled from the component's bytes (no cache, a miss, or a rejected file).
    Compiled,
}

/// A directory of compiled components, bound to this host by a secret key.
#[derive(Clone)]
pub struct CodeCache {
    dir: PathBuf,
    /// sha256 of the engine's precompile compatibility hash (Wasmtime version,
    /// target, compiler flags, tunables): code is only valid for the same engine.
    engine_id: [u8; 32],
    /// `engine_id` abbreviated for file names.
    engine_key: String,
    key: [u8; KEY_LEN],
}

impl std::fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("CodeCache")
            .field("dir", &self.dir)
            .field("engine_key", &self.engine_key)
            .finish_non_exhaustive()
    }
}

/// Feeds `Hash` output into SHA-256, so the whole compatibility hash is digested
/// (not folded into 64 bits by a `DefaultHasher` whose algorithm may change).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Unused: the digest is read with `finalize`.
        0
    }
}

impl CodeCache {
    /// Opens (creating if needed, mode 0700) a cache directory for this engine's settings,
    /// and its key file `<dir>.key` (created with 32 random bytes, mode 0600, on first use).
    ///
    /// # Errors
    /// The directory cannot be created or chmodded; the key file cannot be created or
    /// read, is not a regular file, is not owned by the directory's owner, is readable or
    /// writable by group or others, or is not exactly 32 bytes. Each message names the file.
    pub fn open(dir: &Path, engine: &wasmtime::Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_id: [u8; 32] = hasher.0.finalize().into();
        let key = load_or_create_key(&key_path(dir), dir)?;
        Ok(CodeCache {
            dir: dir.to_owned(),
            engine_key: hex::encode(&engine_id[..8]),
            engine_id,
            key,
        })
    }

    /// The cache file for a component digest.
    pub fn path_for(&self, sha256_hex: &str) -> PathBuf {
        self.dir.join(format!("{sha256_hex}-{}.cwasm", self.engine_key))
    }

    /// The key file of a cache directory: a sibling, `<dir>.key`, so that whoever can
    /// replace files in the directory (a restored CI cache, a shared volume) does not
    /// thereby hold the key.
    pub fn key_path(dir: &Path) -> PathBuf {
        key_path(dir)
    }

    /// Returns the cached compiled component, or compiles `bytes` and stores the result.
    ///
    /// `sha256_hex` must be the verified digest of `bytes`; `name` identifies the plugin
    /// in logs. A cache file that fails any check is logged and replaced; a cache write
    /// failure is logged and the freshly compiled component is still returned.
    ///
    /// # Errors
    /// Only compilation errors of `bytes`.
    pub fn load_or_compile(
        &self,
        engine: &wasmtime::Engine,
        name: &str,
        sha256_hex: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CodeSource)> {
        let path = self.path_for(sha256_hex);
        if is_ours(&path) {
            match self.read_verified(&path, sha256_hex) {
                Ok(code) => match deserialize_verified(engine, &code) {
                    Ok(component) => return Ok((component, CodeSource::Cache)),
                    Err(error) => {
                        tracing::warn!(plugin = name, path = %path.display(), %error, "recompiling: cached plugin code is unusable");
                    }
                },
                Err(reason) => {
                    tracing::warn!(plugin = name, path = %path.display(), %reason, "recompiling: cached plugin code is not bound to this component and host");
                }
            }
        } else if std::fs::symlink_metadata(&path).is_ok() {
            tracing::warn!(plugin = name, path = %path.display(), "recompiling: cached plugin code is not a private file of ours");
        }
        let component = Component::new(engine, bytes)?;
        match component.serialize() {
            Ok(code) => {
                if let Err(error) = self.store(&path, sha256_hex, &code) {
                    tracing::warn!(plugin = name, path = %path.display(), %error, "could not cache compiled plugin code");
                }
            }
            Err(error) => tracing::warn!(plugin = name, %error, "could not serialize compiled plugin code"),
        }
        Ok((component, CodeSource::Compiled))
    }

    /// The MAC over what a cache file binds: engine, component digest, code.
    fn mac(&self, sha256_hex: &str, code: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; ours is always 32 bytes, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        // Fixed-length fields before the variable one: the encoding is unambiguous.
        mac.update(MAC_CONTEXT);
        mac.update(&self.engine_id);
        let digest = sha256_hex.as_bytes();
        mac.update(&(digest.len() as u64).to_be_bytes());
        mac.update(digest);
        mac.update(code);
        mac
    }

    /// Reads a cache file and returns its code if the header's MAC verifies; otherwise
    /// says why not.
    fn read_verified(&self, path: &Path, sha256_hex: &str) -> Result<Vec<u8>, String> {
        let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let mut data = Vec::new();
        // Read at most one byte past the cap, so an oversized file is noticed without
        // reading it all.
        (&mut file)
            .take(MAX_ARTEFACT_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("cannot read: {e}"))?;
        if data.len() as u64 > MAX_ARTEFACT_BYTES {
            return Err(format!("larger than {MAX_ARTEFACT_BYTES} bytes"));
        }
        let Some((magic, rest)) = data.split_first_chunk::<{ MAGIC.len() }>() else {
            return Err("truncated: no header".into());
        };
        if magic != MAGIC {
            return Err("no kitsync header (a MAC-less artefact)".into());
        }
        let Some((tag, code)) = rest.split_first_chunk::<MAC_LEN>() else {
            return Err("truncated: incomplete MAC".into());
        };
        // `verify_slice` compares in constant time.
        self.mac(sha256_hex, code)
            .verify_slice(tag)
            .map_err(|_| "MAC mismatch (tampered, truncated, foreign or from another key)".to_owned())?;
        Ok(data.split_off(HEADER_LEN))
    }

    fn store(&self, path: &Path, sha256_hex: &str, code: &[u8]) -> std::io::Result<()> {
        let tag = self.mac(sha256_hex, code).finalize().into_bytes();
        let (tmp_path, mut tmp) = tempfile_in(&self.dir, ".tmp")?;
        let written = (|| {
            tmp.write_all(MAGIC)?;
            tmp.write_all(&tag)?;
            tmp.write_all(code)?;
            tmp.sync_all()?;
            std::fs::rename(&tmp_path, path)
        })();
        if written.is_err() {
            // Best effort: do not leave half-written files behind.
            let _ = std::fs::remove_file(&tmp_path);
        }
        written
    }
}

fn key_path(dir: &Path) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "plugins".into());
    name.push(".key");
    match dir.parent() {
        Some(parent) => parent.join(name),
        None => PathBuf::from(name),
    }
}

/// Reads the cache key, creating it (32 bytes from the OS, mode 0600) if it does not exist.
/// `owner_of` is a path whose owner stands in for us (std exposes no geteuid): the cache
/// directory, which `open` just chmodded, something only its owner may do.
fn load_or_create_key(path: &Path, owner_of: &Path) -> std::io::Result<[u8; KEY_LEN]> {
    let invalid = |why: String| std::io::Error::other(format!("plugin cache key {}: {why}", path.display()));
    if std::fs::symlink_metadata(path).is_err() {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| invalid(format!("no OS randomness: {e}")))?;
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let (tmp_path, mut tmp) = tempfile_in(parent, ".kitsync-key")?;
        let created = tmp
            .write_all(&key)
            .and_then(|()| tmp.sync_all())
            // A hard link fails if the name exists: of two processes creating the key at
            // once, exactly one wins, and the other reads the winner's complete file below.
            .and_then(|()| std::fs::hard_link(&tmp_path, path));
        let _ = std::fs::remove_file(&tmp_path);
        match created {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(invalid(format!("cannot create: {e}"))),
        }
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| invalid(format!("cannot stat: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(invalid("not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(owner_of)
            .map_err(|e| invalid(format!("cannot stat {}: {e}", owner_of.display())))?;
        if meta.uid() != owner.uid() {
            return Err(invalid(format!(
                "owned by uid {}, not by {} (the cache directory's owner)",
                meta.uid(),
                owner.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(invalid(format!(
                "mode {:o} lets group or others access it; chmod 600 it or delete it (compiled code is then rebuilt)",
                meta.mode() & 0o777
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = owner_of;
    let data = std::fs::read(path).map_err(|e| invalid(format!("cannot read: {e}")))?;
    <[u8; KEY_LEN]>::try_from(data.as_slice())
        .map_err(|_| invalid(format!("{} bytes, expected {KEY_LEN}", data.len())))
}

/// Creates a new private file with a unique name in `dir`.
fn tempfile_in(dir: &Path, prefix: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = dir.join(format!("{prefix}-{}-{stamp}", std::process::id()));
    Ok((path.clone(), options.open(&path)?))
}

/// True when `path` is a regular file owned by this user and not writable by others.
fn is_ours(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.file_type().is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // std exposes no geteuid; the directory's owner stands in for us, since
        // `open` chmodded it and only the owner may do that.
        let Some(dir_meta) = path.parent().and_then(|d| std::fs::metadata(d).ok()) else {
            return false;
        };
        if meta.uid() != dir_meta.uid() || meta.mode() & 0o022 != 0 {
            return false;
        }
    }
    true
}

/// Turns compiled code this host wrote, and whose MAC verified, back into a component.
#[allow(unsafe_code)]
fn deserialize_verified(engine: &wasmtime::Engine, code: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `code` is exactly the bytes whose HMAC-SHA256 under this host's secret key
    // (kept outside the cache directory, 0600) verified over this engine's compatibility
    // hash and the component's verified sha256: only `CodeCache::store` computes such a
    // MAC, over the output of `Component::serialize` for that component on this engine.
    // The bytes are in memory, so the file cannot change between check and use.
    // Wasmtime additionally checks the header for version and settings compatibility.
    unsafe { Component::deserialize(engine, code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_a_sibling_of_the_directory() {
        assert_eq!(
            key_path(Path::new("/var/cache/kitsync/plugins")),
            PathBuf::from("/var/cache/kitsync/plugins.key")
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("plugins");
        std::fs::create_dir(&dir).expect("mkdir");
        let path = key_path(&dir);
        let first = load_or_create_key(&path, &dir).expect("created");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_key(&path, &dir).expect("reread"), first);
        assert_ne!(first, [0u8; KEY_LEN]);
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_or_short_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("plugins");
        std::fs::create_dir(&dir).expect("mkdir");
        let path = key_path(&dir);
        load_or_create_key(&path, &dir).expect("created");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_or_create_key(&path, &dir).expect_err("world-readable");
        assert!(err.to_string().contains("group or others"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, b"short").expect("write");
        let err = load_or_create_key(&path, &dir).expect_err("short");
        assert!(err.to_string().contains("expected 32"), "{err}");
    }
}
