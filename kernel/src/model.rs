//! Where a model's files are on this machine: `experiment.model` is a local
//! directory, or a Hugging Face id (`Qwen/Qwen3-8B`) found in the local
//! Hugging Face cache. Offline only: nothing is downloaded, so a model that is
//! not in the cache has no files here (the engine may still download it).
//!
//! The cache is the hub layout `huggingface_hub` writes and vLLM, TensorRT-LLM
//! and transformers read: `<cache>/models--<org>--<name>/refs/<revision>` holds
//! a commit hash, `snapshots/<hash>/` the files, each a symbolic link into
//! `blobs/`. `<cache>` is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.

use std::path::{Path, PathBuf};

/// Where a model's files were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLocation {
    /// `experiment.model` is this directory.
    LocalDir(PathBuf),
    /// A snapshot of a Hugging Face repository in the local cache.
    HfCache {
        repo: String,
        revision: String,
        snapshot: PathBuf,
    },
}

impl ModelLocation {
    /// The directory holding the model's files.
    pub fn dir(&self) -> &Path {
        match self {
            ModelLocation::LocalDir(dir) => dir,
            ModelLocation::HfCache { snapshot, .. } => snapshot,
        }
    }

    /// A file of the model (`config.json`, `tokenizer.json`), resolved to the
    /// real file (a cache snapshot holds links into `blobs/`): the path to
    /// grant a sandboxed plugin, alone. `None` when the model has no such file.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        let path = self.dir().join(name);
        let real = std::fs::canonicalize(&path).ok()?;
        real.is_file().then_some(real)
    }

    /// In words, for logs and dry runs.
    pub fn describe(&self) -> String {
        match self {
            ModelLocation::LocalDir(dir) => format!("local directory {}", dir.display()),
            ModelLocation::HfCache {
                repo,
                revision,
                snapshot,
            } => format!(
                "{repo} in the Hugging Face cache (revision {revision}: {})",
                snapshot.display()
            ),
        }
    }
}

/// The Hugging Face hub cache directory this process would use.
pub fn hf_hub_cache() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HF_HUB_CACHE")
        .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/huggingface/hub")))
}

/// Find `model`: an existing directory, else a repository id in `cache`.
pub fn locate_in(model: &str, cache: Option<&Path>) -> Option<ModelLocation> {
    if model.is_empty() {
        return None;
    }
    let path = Path::new(model);
    if path.is_dir() {
        return Some(ModelLocation::LocalDir(path.to_owned()));
    }
    let (repo, revision) = match model.split_once('@') {
        Some((repo, rev)) if !rev.is_empty() => (repo, rev),
        _ => (model, "main"),
    };
    // A repository id is `name` or `org/name`, never a path.
    if repo.starts_with(['/', '.', '~']) || repo.split('/').count() > 2 {
        return None;
    }
    let repo_dir = cache?.join(format!("models--{}", repo.replace('/', "--")));
    let snapshots = repo_dir.join("snapshots");
    // `refs/<revision>` names the commit; a commit hash names itself.
    let commit = std::fs::read_to_string(repo_dir.join("refs").join(revision))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| revision.to_owned());
    let snapshot = snapshots.join(&commit);
    let snapshot = if snapshot.is_dir() && !commit.contains('/') {
        snapshot
    } else if revision == "main" {
        // No ref (a cache filled by hand or by a partial download): the newest snapshot.
        newest_dir(&snapshots)?
    } else {
        return None;
    };
    Some(ModelLocation::HfCache {
        repo: repo.to_owned(),
        revision: snapshot
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        snapshot,
    })
}

/// Find `model` on this machine (see the module documentation).
pub fn locate(model: &str) -> Option<ModelLocation> {
    locate_in(model, hf_hub_cache().as_deref())
}

fn newest_dir(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// The model's `config.json`, parsed; `None` when there is none here.
pub fn config_json(model: &str) -> Option<serde_json::Value> {
    let path = locate(model)?.file("config.json")?;
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The longest sequence the model's config allows, in tokens.
pub fn context_length(config: &serde_json::Value) -> Option<u64> {
    let cfg = config
        .get("text_config")
        .filter(|_| config.get("max_position_embeddings").is_none())
        .unwrap_or(config);
    [
        "max_position_embeddings",
        "n_positions",
        "max_seq_len",
        "seq_length",
    ]
    .iter()
    .find_map(|k| cfg.get(*k).and_then(serde_json::Value::as_u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache as `huggingface_hub` lays it out: a ref, a snapshot of links into blobs.
    fn fake_cache(root: &Path, repo: &str, commit: &str) -> PathBuf {
        let repo_dir = root.join(format!("models--{}", repo.replace('/', "--")));
        std::fs::create_dir_all(repo_dir.join("refs")).expect("mkdir");
        std::fs::create_dir_all(repo_dir.join("blobs")).expect("mkdir");
        let snap = repo_dir.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).expect("mkdir");
        std::fs::write(repo_dir.join("refs/main"), format!("{commit}\n")).expect("ref");
        std::fs::write(
            repo_dir.join("blobs/abc123"),
            "{\"max_position_embeddings\": 4096}",
        )
        .expect("blob");
        std::os::unix::fs::symlink("../../blobs/abc123", snap.join("config.json")).expect("link");
        snap
    }

    #[test]
    fn a_repository_id_is_found_in_the_cache_and_files_resolve_to_blobs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let snap = fake_cache(tmp.path(), "Qwen/Qwen3-8B", "0123abcd");
        let found = locate_in("Qwen/Qwen3-8B", Some(tmp.path())).expect("found");
        assert_eq!(found.dir(), snap);
        let config = found.file("config.json").expect("config");
        assert!(config.ends_with("blobs/abc123"), "{}", config.display());
        assert_eq!(found.file("tokenizer.json"), None);
        let by_hash = locate_in("Qwen/Qwen3-8B@0123abcd", Some(tmp.path())).expect("found");
        assert_eq!(by_hash.dir(), snap);
        assert_eq!(locate_in("Qwen/Qwen3-8B@v2", Some(tmp.path())), None);
        assert_eq!(locate_in("Other/Model", Some(tmp.path())), None);
        assert_eq!(locate_in("Qwen/Qwen3-8B", None), None);
        assert_eq!(locate_in("../models/x", Some(tmp.path())), None);
    }

    #[test]
    fn a_directory_is_a_local_model() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_str().expect("utf-8");
        assert_eq!(
            locate_in(dir, None),
            Some(ModelLocation::LocalDir(tmp.path().to_owned()))
        );
    }

    #[test]
    fn context_length_from_common_keys() {
        let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("json");
        assert_eq!(
            context_length(&v(r#"{"max_position_embeddings": 512}"#)),
            Some(512)
        );
        assert_eq!(context_length(&v(r#"{"n_positions": 1024}"#)), Some(1024));
        assert_eq!(
            context_length(&v(r#"{"text_config": {"max_position_embeddings": 8192}}"#)),
            Some(8192)
        );
        assert_eq!(context_length(&v("{}")), None);
    }
}
