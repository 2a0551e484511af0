//! On-disk cache of compiled components, so a second start costs a
//! deserialisation (milliseconds) instead of a Cranelift compile (seconds).
//!
//! A compiled entry is native code that llem maps and runs unchecked, so the
//! cache must not be a way to swap code:
//! * **Key**: SHA-256 of the component bytes, plus a SHA-256 of the engine's
//!   compatibility hash (wasmtime version, compiler settings, CPU features)
//!   and llem's version: stable across runs and Rust releases (no
//!   `DefaultHasher`), and a stale entry never matches.
//! * **Seal**: next to each entry, `<entry>.sha256` records the SHA-256 of the
//!   source component and of the compiled bytes. Before deserialising, llem
//!   checks both: an entry compiled from another component, or altered, is
//!   refused and recompiled.
//! * **Ownership**: the `components` directory is created 0700 and entries
//!   0600. A directory or entry not owned by the user, or writable by group or
//!   others (a shared `LLEM_CACHE_DIR`), is not used: the component is compiled
//!   in memory and a warning says why.

use crate::plugin::private_dir::{self, owned_and_private};
use sha2::{Digest, Sha256};
use std::hash::Hasher;
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

/// First line of a seal file; a future format gets another.
const SEAL_HEADER: &str = "llem-cwasm-seal 1";

pub struct ComponentCache {
    dir: PathBuf,
    engine_key: String,
}

/// Feeds `Hash` output into SHA-256: a stable digest of the engine's
/// compatibility hash, where `DefaultHasher` may change with any Rust release.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0 // never used: the digest is read with `finalize`
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ComponentCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        use std::hash::Hash;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.0.update(env!("CARGO_PKG_VERSION").as_bytes());
        let digest = hasher.0.finalize();
        ComponentCache {
            dir: dir.join("components"),
            engine_key: hex(&digest[..16]),
        }
    }

    fn entry(&self, source_hex: &str) -> PathBuf {
        self.dir
            .join(format!("{source_hex}-{}.cwasm", self.engine_key))
    }

    /// Load from the cache or compile (and store). Cache problems are logged
    /// and never fail the load: the cache is an optimisation.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        let source = hex(&Sha256::digest(bytes));
        if let Err(why) = self.usable_dir() {
            tracing::warn!(
                dir = %self.dir.display(),
                "not using the compiled-component cache ({why}); compiling in memory"
            );
            return Component::from_binary(engine, bytes);
        }
        let entry = self.entry(&source);
        if entry.exists() {
            match verified(&entry, &source) {
                // SAFETY: the bytes are what this code serialised for this very
                // component under this engine: the seal's compiled hash matches
                // them and its source hash matches the component on disk, and
                // both files are the user's own and writable by no one else.
                Ok(compiled) => match unsafe { Component::deserialize(engine, &compiled) } {
                    Ok(component) => return Ok(component),
                    Err(e) => {
                        tracing::warn!(path = %entry.display(), "ignoring unusable cache entry: {e}")
                    }
                },
                Err(why) => {
                    tracing::warn!(path = %entry.display(), "refusing cache entry: {why}; recompiling")
                }
            }
        }
        let component = Component::from_binary(engine, bytes)?;
        if let Err(e) = self.store(&entry, &source, &component) {
            tracing::debug!(path = %entry.display(), "cannot cache compiled component: {e}");
        }
        Ok(component)
    }

    /// The `components` directory, created private if missing; refused when it
    /// is not the user's own or others may write it.
    fn usable_dir(&self) -> Result<(), String> {
        private_dir::ensure(&self.dir)
    }

    fn store(&self, entry: &Path, source: &str, component: &Component) -> anyhow::Result<()> {
        let serialized = component.serialize()?;
        let seal = format!(
            "{SEAL_HEADER}\nsource {source}\ncompiled {}\n",
            hex(&Sha256::digest(&serialized))
        );
        private_dir::write(entry, &serialized)?;
        private_dir::write(&seal_path(entry), seal.as_bytes())?;
        Ok(())
    }
}

fn seal_path(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.sha256")
}

/// The entry's bytes, when its seal names this source and matches them.
fn verified(entry: &Path, source: &str) -> Result<Vec<u8>, String> {
    let seal_file = seal_path(entry);
    owned_and_private(entry)?;
    owned_and_private(&seal_file)?;
    let seal = std::fs::read_to_string(&seal_file).map_err(|e| format!("no readable seal: {e}"))?;
    let mut lines = seal.lines();
    let field = |line: Option<&str>, name: &str| {
        line.and_then(|l| l.strip_prefix(name))
            .and_then(|l| l.strip_prefix(' '))
            .map(str::to_owned)
    };
    if lines.next() != Some(SEAL_HEADER) {
        return Err("its seal is not in a format this llem writes".into());
    }
    let sealed_source = field(lines.next(), "source").ok_or("its seal has no source hash")?;
    let sealed_compiled = field(lines.next(), "compiled").ok_or("its seal has no compiled hash")?;
    if sealed_source != source {
        return Err(format!(
            "it was compiled from another component ({sealed_source}, not {source})"
        ));
    }
    let bytes = std::fs::read(entry).map_err(|e| format!("cannot read it: {e}"))?;
    if hex(&Sha256::digest(&bytes)) != sealed_compiled {
        return Err("its contents are not what llem compiled".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_key_is_a_stable_sha256_of_the_engine() {
        let engine = Engine::default();
        let a = ComponentCache::new(PathBuf::from("/x"), &engine);
        let b = ComponentCache::new(PathBuf::from("/y"), &Engine::default());
        assert_eq!(a.engine_key, b.engine_key);
        assert_eq!(a.engine_key.len(), 32);
        assert!(a.engine_key.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
