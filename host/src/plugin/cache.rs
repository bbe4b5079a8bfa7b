//! On-disk cache of compiled plugin code, keyed by component sha256 and engine compatibility.
//!
//! Compiling a component costs tens of milliseconds (much more in a debug build);
//! loading the cached machine code is a memory map. Deserializing machine code is
//! `unsafe` because it is trusted to be what Wasmtime wrote, so the cache only ever
//! reads files this host wrote itself: the directory is created private (0700), files
//! are written to a temporary name and renamed, and a file not owned by this user or
//! writable by others is ignored and recompiled.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct CodeCache {
    dir: PathBuf,
    engine_key: String,
}

impl CodeCache {
    /// Opens (creating if needed, mode 0700) a cache directory for this engine's settings.
    pub fn open(dir: &Path, engine: &wasmtime::Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        // A stable hash of everything that makes compiled code incompatible:
        // Wasmtime version, target, compiler flags and tunables.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CodeCache {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// The cache file for a component digest.
    pub fn path_for(&self, sha256_hex: &str) -> PathBuf {
        self.dir.join(format!("{sha256_hex}-{}.cwasm", self.engine_key))
    }

    /// Returns the cached compiled component, or compiles `bytes` and stores the result.
    ///
    /// `sha256_hex` must be the verified digest of `bytes`. A cache write failure is
    /// logged and the freshly compiled component is still returned.
    pub fn load_or_compile(
        &self,
        engine: &wasmtime::Engine,
        sha256_hex: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, bool)> {
        let path = self.path_for(sha256_hex);
        if is_ours(&path) {
            match deserialize_own(engine, &path) {
                Ok(component) => return Ok((component, true)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring unusable cached plugin code");
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        match component.serialize() {
            Ok(code) => {
                if let Err(error) = self.store(&path, &code) {
                    tracing::warn!(path = %path.display(), %error, "could not cache compiled plugin code");
                }
            }
            Err(error) => tracing::warn!(%error, "could not serialize compiled plugin code"),
        }
        Ok((component, false))
    }

    fn store(&self, path: &Path, code: &[u8]) -> std::io::Result<()> {
        let mut tmp = tempfile_in(&self.dir)?;
        tmp.1.write_all(code)?;
        tmp.1.sync_all()?;
        std::fs::rename(&tmp.0, path)
    }
}

/// Creates a new private file with a unique name in `dir`.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
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
    let path = dir.join(format!(".tmp-{}-{stamp}", std::process::id()));
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

/// Maps compiled code this host wrote back into memory.
#[allow(unsafe_code)]
fn deserialize_own(engine: &wasmtime::Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `path` is in the private cache directory, named by the component's verified
    // sha256 and this engine's compatibility hash, owned by us and not writable by others
    // (`is_ours`); only `CodeCache::store` writes such files, from `Component::serialize`.
    // Wasmtime additionally checks the header for version and settings compatibility.
    unsafe { Component::deserialize_file(engine, path) }
}
