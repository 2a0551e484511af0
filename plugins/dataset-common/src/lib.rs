//! Code shared by llem's dataset plugins (`dataset-synthetic`,
//! `dataset-sharegpt`, `dataset-alpaca`): not a plugin itself
//! (`[package.metadata.llem] build = "none"`), linked into each.
//!
//! - [`Rng`]: SplitMix64, deterministic for a seed and identical on every
//!   target, with the seeded Fisher-Yates [`shuffle`] of `dataset-jsonl`.
//! - [`Tokens`]: a Hugging Face `tokenizer.json` and the one way every plugin
//!   counts tokens (the text alone, no special tokens; see [`Tokens::count`]).
//! - [`Dist`]: a length distribution read from a manifest table.
//! - [`read_json`]: a JSON file, with `file:line:column` in errors.
//! - [`Selection`]: shuffle, measure, filter and take records from a file.

use llem_sdk::{ErrorCode, LoadRequest, PluginError};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

mod dist;
mod rng;
mod select;
mod tokens;

pub use dist::Dist;
pub use rng::{Rng, shuffle};
pub use select::{Counts, FilterDefaults, Record, Selection, input_tokens};
pub use tokens::Tokens;

/// The tokenizer to use: the plugin's `tokenizer` option if set, else the
/// model's (`LoadRequest::tokenizer_path`), else `None`.
pub fn tokenizer_path(option: Option<&str>, request: &LoadRequest) -> Option<String> {
    option
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .or_else(|| request.tokenizer_path.clone().filter(|p| !p.is_empty()))
}

/// Load the tokenizer named by the `tokenizer` option or the load request, if any.
pub fn load_tokenizer(
    option: Option<&str>,
    request: &LoadRequest,
) -> Result<Option<Tokens>, PluginError> {
    tokenizer_path(option, request)
        .map(|path| Tokens::from_file(&path))
        .transpose()
}

/// Read and parse a JSON file; a syntax error names `path:line:column`.
pub fn read_json<T: DeserializeOwned>(path: &str, key: &str) -> Result<T, PluginError> {
    let file = std::fs::File::open(path).map_err(|e| {
        PluginError::io(format_args!("cannot read {path}"), &e).with_hint(format!(
            "check `{key}`; when you set it, that file is granted to the plugin read-only"
        ))
    })?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    serde_json::from_reader(reader).map_err(|e| json_error(path, key, &e))
}

/// A serde_json error as `path:line:column: message`.
pub fn json_error(path: &str, key: &str, err: &serde_json::Error) -> PluginError {
    let what = match err.classify() {
        serde_json::error::Category::Io => {
            return PluginError::new(ErrorCode::Io, format!("cannot read {path}: {err}"));
        }
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "malformed JSON",
        serde_json::error::Category::Data => "unexpected JSON content",
    };
    // serde_json's Display ends with " at line L column C"; keep only its message.
    let full = err.to_string();
    let message = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(m, _)| m);
    PluginError::invalid_config(
        key,
        format!("{path}:{}:{}: {what}: {message}", err.line(), err.column()),
    )
}

/// Reject keys of a table option other than `allowed`, naming `option.key`.
pub fn check_keys(
    option: &str,
    table: &Map<String, Value>,
    allowed: &[&str],
) -> Result<(), PluginError> {
    for key in table.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(PluginError::invalid_config(
                &format!("{option}.{key}"),
                format!("unknown key; expected one of {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// A string option, or `None` when absent, null or empty.
pub fn optional_string(
    config: &llem_sdk::Config,
    key: &str,
) -> Result<Option<String>, PluginError> {
    Ok(config.optional::<String>(key)?.filter(|s| !s.is_empty()))
}

/// A non-negative integer option with a default.
pub fn u32_option(config: &llem_sdk::Config, key: &str, default: u32) -> Result<u32, PluginError> {
    Ok(config.optional::<u32>(key)?.unwrap_or(default))
}

/// Take at most `limit` items: the plugin's own count (0 = all), then the
/// kernel's `LoadRequest::limit`.
pub fn take_limit(num_prompts: u32, request: &LoadRequest) -> Option<usize> {
    let own = (num_prompts > 0).then_some(num_prompts as usize);
    match (own, request.limit.map(|l| l as usize)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_errors_name_the_position() {
        let err = serde_json::from_str::<Value>("[\n  {\"a\": 1,}\n]").unwrap_err();
        let e = json_error("data.json", "file", &err);
        assert!(e.message.starts_with("data.json:2:"), "{}", e.message);
        assert!(e.message.contains("malformed JSON"), "{}", e.message);
        assert_eq!(e.key.as_deref(), Some("file"));
    }

    #[test]
    fn limits_combine() {
        let mut request = LoadRequest {
            model: "m".into(),
            tokenizer_path: None,
            seed: 0,
            limit: None,
        };
        assert_eq!(take_limit(0, &request), None);
        assert_eq!(take_limit(5, &request), Some(5));
        request.limit = Some(3);
        assert_eq!(take_limit(5, &request), Some(3));
        assert_eq!(take_limit(0, &request), Some(3));
    }
}
