//! On-disk cache of compiled components, so a second start costs a
//! deserialisation (milliseconds) instead of a Cranelift compile (seconds).
//!
//! Key: SHA-256 of the component bytes + the engine's compatibility hash
//! (wasmtime version, compiler settings, CPU features). A stale or foreign
//! entry therefore never matches; a corrupt one is recompiled and replaced.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LLEM_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("llem"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("llem"))
}

pub struct ComponentCache {
    dir: PathBuf,
    engine_key: String,
}

impl ComponentCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        ComponentCache {
            dir: dir.join("components"),
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn entry(&self, bytes: &[u8]) -> PathBuf {
        let digest = Sha256::digest(bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}-{}.cwasm", self.engine_key))
    }

    /// Load from the cache or compile (and store). Cache problems are logged
    /// and never fail the load: the cache is an optimisation.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        let entry = self.entry(bytes);
        if entry.exists() {
            // SAFETY: entries are written only by this code, from Component::serialize,
            // under a key that includes the engine's compatibility hash.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %entry.display(), "ignoring unusable cache entry: {e}")
                }
            }
        }
        let component = Component::from_binary(engine, bytes)?;
        if let Err(e) = self.store(&entry, &component) {
            tracing::debug!(path = %entry.display(), "cannot cache compiled component: {e}");
        }
        Ok(component)
    }

    fn store(&self, entry: &Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let serialized = component.serialize()?;
        // Write then rename, so a concurrent llem never maps a half-written file.
        let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serialized)?;
        std::fs::rename(&tmp, entry)?;
        Ok(())
    }
}
