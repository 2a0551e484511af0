//! On-disk cache of what each plugin file says about itself (`describe()`),
//! so listing plugins and resolving a manifest does not load every plugin
//! on the path: a warm `llem plugins list` reads a few small files instead of
//! deserialising and instantiating every component and `dlopen`ing every
//! native library.
//!
//! What makes an entry stale (it is then ignored and rewritten):
//! * **the plugin file**: its path, device, inode, size, modification and
//!   status-change times (nanoseconds). A rebuilt or replaced file changes at
//!   least the times; a file swapped in by a rename changes the inode; the
//!   status-change time cannot be set back by the user. A file changed less
//!   than [`RACY_WINDOW`] ago is not cached: the file system's timestamps are
//!   coarse (a clock tick), so a second write in the same tick with the same
//!   size could look unchanged (git's "racy clean" problem).
//! * **this llem**: its version, the WIT contract and native ABI versions it
//!   hosts, and the identity of its executable (path, size, times), so a
//!   rebuilt llem (another wasmtime, other conversions or limits) describes
//!   every plugin afresh. The engine's configuration is fixed in llem's code,
//!   so the executable's identity covers it; CPU features change compiled
//!   code, never a description.
//!
//! Trust: entries live in llem's private cache directory (0700, the user's
//! own, like the compiled-component cache whose entries are native code) and
//! carry a SHA-256 of their contents, so a truncated or corrupt entry is
//! ignored. Above all, a cached description is only ever *shown* or used to
//! *resolve* a manifest: before any plugin is opened (given a sandbox, its
//! grants, its configuration) its code is loaded and described live, and a
//! description that differs from the cached one refuses the open (see
//! `lazy.rs`). Grants come from the manifest; the one description-derived
//! grant (the `path` defaults of a plugin shipped with llem) is thus checked
//! against the plugin itself before it takes effect.

use crate::plugin::private_dir;
use llem_sdk::PluginInfo;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// First word of an entry; a future format gets another.
const HEADER: &str = "llem-described 1";

/// A file changed this recently is described but not cached (see module docs).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// What identifies one plugin file on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileStamp {
    /// The stamp of the file at `path` (links followed: the file that loads).
    pub fn of(path: &Path) -> std::io::Result<FileStamp> {
        let meta = std::fs::metadata(path)?;
        Ok(stamp(path, &meta))
    }

    /// Changed within `window` of `now` (or in the future).
    fn racy(&self, now: SystemTime, window: Duration) -> bool {
        let now_ns = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let window_ns = i64::try_from(window.as_nanos()).unwrap_or(i64::MAX);
        now_ns.saturating_sub(self.mtime_ns.max(self.ctime_ns)) < window_ns
    }
}

#[cfg(unix)]
fn stamp(path: &Path, meta: &std::fs::Metadata) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    let ns = |secs: i64, nanos: i64| secs.saturating_mul(1_000_000_000).saturating_add(nanos);
    FileStamp {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
    }
}

#[cfg(not(unix))]
fn stamp(path: &Path, meta: &std::fs::Metadata) -> FileStamp {
    let ns = |t: std::io::Result<SystemTime>| {
        t.ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    };
    FileStamp {
        path: path.to_owned(),
        dev: 0,
        ino: 0,
        size: meta.len(),
        mtime_ns: ns(meta.modified()),
        ctime_ns: ns(meta.created()),
    }
}

/// One entry: for this llem and this file, this description.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    host: String,
    file: FileStamp,
    info: PluginInfo,
    /// Each option's default, wrapped: `OptionSpec` writes a `null` default
    /// (vLLM's "the engine decides") and no default (a required option)
    /// alike, so `info`'s own defaults do not survive the trip.
    defaults: Vec<Option<StoredDefault>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredDefault {
    value: serde_json::Value,
}

impl Entry {
    fn new(host: String, file: FileStamp, info: &PluginInfo) -> Entry {
        let defaults = info
            .options
            .iter()
            .map(|o| o.default.clone().map(|value| StoredDefault { value }))
            .collect();
        Entry {
            host,
            file,
            info: info.clone(),
            defaults,
        }
    }

    /// The description as the plugin gave it.
    fn into_info(self) -> Result<PluginInfo, String> {
        let mut info = self.info;
        if self.defaults.len() != info.options.len() {
            return Err("its option defaults do not match its options".into());
        }
        for (option, default) in info.options.iter_mut().zip(self.defaults) {
            option.default = default.map(|d| d.value);
        }
        Ok(info)
    }
}

/// Descriptions cached in `<cache dir>/described/`, one file per plugin path.
#[derive(Debug)]
pub struct DescribeCache {
    dir: PathBuf,
    /// Digest of everything about this llem that shapes a description.
    host: String,
    racy_window: Duration,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// A description of exactly this file, by this llem.
    Hit(PluginInfo),
    /// None usable: describe the plugin live, then [`DescribeCache::store`]
    /// it under this stamp (taken before loading, so a file that changes
    /// meanwhile is not cached under its new stamp). `None`: cannot cache.
    Miss(Option<FileStamp>),
}

impl DescribeCache {
    pub fn new(cache_dir: &Path) -> DescribeCache {
        DescribeCache {
            dir: cache_dir.join("described"),
            host: host_identity(),
            racy_window: RACY_WINDOW,
        }
    }

    fn entry_path(&self, plugin: &Path) -> PathBuf {
        let digest = Sha256::digest(plugin.as_os_str().as_encoded_bytes());
        self.dir.join(format!("{}.json", hex(&digest[..16])))
    }

    pub fn lookup(&self, plugin: &Path) -> Lookup {
        let Ok(file) = FileStamp::of(plugin) else {
            return Lookup::Miss(None);
        };
        let entry = self.entry_path(plugin);
        match self.read(&entry, &file) {
            Ok(info) => Lookup::Hit(info),
            Err(why) => {
                if entry.exists() {
                    tracing::debug!(plugin = %plugin.display(), "not using the cached description: {why}");
                }
                Lookup::Miss(Some(file))
            }
        }
    }

    fn read(&self, entry: &Path, file: &FileStamp) -> Result<PluginInfo, String> {
        private_dir::owned_and_private(&self.dir)?;
        private_dir::owned_and_private(entry)?;
        let text = std::fs::read_to_string(entry).map_err(|e| format!("cannot read it: {e}"))?;
        let (first, body) = text.split_once('\n').ok_or("it has no header line")?;
        let sealed = first
            .strip_prefix(HEADER)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or("it is not in a format this llem writes")?;
        if hex(&Sha256::digest(body.as_bytes())) != sealed {
            return Err("its contents do not match their digest (corrupt or altered)".into());
        }
        let entry: Entry =
            serde_json::from_str(body).map_err(|e| format!("it does not parse: {e}"))?;
        if entry.host != self.host {
            return Err("it was written by another llem build".into());
        }
        if entry.file != *file {
            return Err("the plugin file changed since".into());
        }
        entry.into_info()
    }

    /// Cache `info` as the description of the file `stamp` names, unless the
    /// file has changed since the stamp was taken or changed too recently to
    /// tell a later change apart. Failures are logged: the cache is an
    /// optimisation.
    pub fn store(&self, stamp: FileStamp, info: &PluginInfo) {
        let now = FileStamp::of(&stamp.path).ok();
        if now.as_ref() != Some(&stamp) || stamp.racy(SystemTime::now(), self.racy_window) {
            return;
        }
        let entry_path = self.entry_path(&stamp.path);
        let entry = Entry::new(self.host.clone(), stamp, info);
        let written = private_dir::ensure(&self.dir).and_then(|()| {
            let body = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
            let text = format!("{HEADER} {}\n{body}", hex(&Sha256::digest(body.as_bytes())));
            private_dir::write(&entry_path, text.as_bytes()).map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            tracing::debug!(path = %entry_path.display(), "cannot cache the plugin's description: {e}");
        }
    }

    /// Drop the entry of `plugin` (its live description disagreed with it).
    pub fn forget(&self, plugin: &Path) {
        let _ = std::fs::remove_file(self.entry_path(plugin));
    }
}

/// This llem, as far as a description depends on it (see module docs).
fn host_identity() -> String {
    let mut hasher = Sha256::new();
    hasher.update(HEADER.as_bytes());
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    let (major, minor, patch) = crate::plugin::wasm::HOST_WIT_VERSION;
    hasher.update(format!("wit {major}.{minor}.{patch}").as_bytes());
    hasher.update(format!("abi {:?}", llem_sdk::abi::SUPPORTED_ABI_VERSIONS).as_bytes());
    // Without a readable executable the version above is all there is; a
    // cached description is checked against the live one before use anyway.
    if let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|exe| FileStamp::of(&exe).ok())
    {
        hasher.update(format!("{exe:?}").as_bytes());
    }
    hex(&hasher.finalize()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use llem_sdk::PluginKind;

    fn info(description: &str) -> PluginInfo {
        PluginInfo {
            name: "energy-x".into(),
            kind: PluginKind::Energy,
            version: "1.0.0".into(),
            description: description.into(),
            options: vec![
                llem_sdk::OptionSpec::with_default(
                    "scale",
                    llem_sdk::OptionType::Float,
                    0.1 + 0.2,
                    "a float default must come back bit for bit",
                ),
                // A `null` default is not "required" (vLLM's `dtype`).
                llem_sdk::OptionSpec::with_default(
                    "dtype",
                    llem_sdk::OptionType::String,
                    serde_json::Value::Null,
                    "null: the engine decides",
                ),
                llem_sdk::OptionSpec::required("model", llem_sdk::OptionType::String, "required"),
            ],
        }
    }

    /// A plugin file old enough to be cached.
    fn settled_file(dir: &Path, bytes: &[u8]) -> PathBuf {
        let path = dir.join("energy-x.wasm");
        std::fs::write(&path, bytes).unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        path
    }

    /// A cache whose racy window is short, so tests wait little.
    fn quick_cache(root: &Path) -> DescribeCache {
        DescribeCache {
            racy_window: QUICK,
            ..DescribeCache::new(&root.join("cache"))
        }
    }

    const QUICK: Duration = Duration::from_millis(50);

    fn wait_out_racy_window(path: &Path) {
        // The status-change time moves with every write and cannot be set
        // back: wait until it is old enough for the entry to be stored.
        let stamp = FileStamp::of(path).unwrap();
        while stamp.racy(SystemTime::now(), QUICK) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn miss_stamp(cache: &DescribeCache, path: &Path) -> FileStamp {
        match cache.lookup(path) {
            Lookup::Miss(Some(stamp)) => stamp,
            other => panic!("expected a miss with a stamp, got {other:?}"),
        }
    }

    #[test]
    fn a_stored_description_comes_back_exactly() {
        let root = tempfile::tempdir().unwrap();
        let path = settled_file(root.path(), b"plugin");
        wait_out_racy_window(&path);
        let cache = quick_cache(root.path());
        let stamp = miss_stamp(&cache, &path);
        cache.store(stamp, &info("first"));
        match cache.lookup(&path) {
            Lookup::Hit(found) => assert_eq!(found, info("first")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rewritten_file_misses_even_with_its_size_and_mtime_restored() {
        let root = tempfile::tempdir().unwrap();
        let path = settled_file(root.path(), b"plugin-a");
        wait_out_racy_window(&path);
        let cache = quick_cache(root.path());
        cache.store(miss_stamp(&cache, &path), &info("a"));
        let before = FileStamp::of(&path).unwrap();
        // Same size, same modification time: only the status-change time tells.
        std::fs::write(&path, b"plugin-b").unwrap();
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_nanos(before.mtime_ns as u64);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(matches!(cache.lookup(&path), Lookup::Miss(Some(_))));
    }

    #[test]
    fn a_file_changed_just_now_is_not_cached() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("energy-x.wasm");
        std::fs::write(&path, b"fresh").unwrap();
        let cache = DescribeCache::new(&root.path().join("cache"));
        cache.store(miss_stamp(&cache, &path), &info("fresh"));
        assert!(matches!(cache.lookup(&path), Lookup::Miss(Some(_))));
    }

    #[test]
    fn a_corrupt_or_foreign_entry_is_ignored() {
        let root = tempfile::tempdir().unwrap();
        let path = settled_file(root.path(), b"plugin");
        wait_out_racy_window(&path);
        let cache = quick_cache(root.path());
        cache.store(miss_stamp(&cache, &path), &info("real"));
        let entry = cache.entry_path(&path);
        let text = std::fs::read_to_string(&entry).unwrap();
        // Altered without resealing: refused.
        private_dir::write(&entry, text.replace("real", "fake").as_bytes()).unwrap();
        assert!(matches!(cache.lookup(&path), Lookup::Miss(Some(_))));
        // Written by another llem build: refused.
        let other = DescribeCache {
            host: "another".into(),
            ..quick_cache(root.path())
        };
        other.store(miss_stamp(&other, &path), &info("other"));
        assert!(matches!(cache.lookup(&path), Lookup::Miss(Some(_))));
        // Truncated: refused.
        private_dir::write(&entry, &text.as_bytes()[..text.len() / 2]).unwrap();
        assert!(matches!(cache.lookup(&path), Lookup::Miss(Some(_))));
    }
}
