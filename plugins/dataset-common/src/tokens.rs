//! A Hugging Face `tokenizer.json`, and how the dataset plugins count tokens.

use llem_sdk::{ErrorCode, PluginError};
use tokenizers::Tokenizer;

/// A loaded tokenizer and the vocabulary ids usable as random prompt text.
pub struct Tokens {
    tokenizer: Tokenizer,
    path: String,
    /// Model vocabulary size (without added tokens).
    vocab_size: u32,
    /// Ids of added tokens (special or not): never sampled.
    added: std::collections::HashSet<u32>,
    /// Per id: `None` not checked yet, `Some(ok)` usable as random text or not.
    usable: Vec<Option<bool>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Load `tokenizer.json` from `path`.
    pub fn from_file(path: &str) -> Result<Self, PluginError> {
        // One thread: WASI has none to give, and the plugins encode one text at a time.
        tokenizers::utils::parallelism::set_parallelism(false);
        let bytes = std::fs::read(path).map_err(|e| {
            PluginError::io(format_args!("cannot read tokenizer {path}"), &e).with_hint(
                "check `tokenizer` (a Hugging Face tokenizer.json); when you set it, that file is granted to the plugin read-only",
            )
        })?;
        let tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| {
            PluginError::invalid_config(
                "tokenizer",
                format!("{path} is not a Hugging Face tokenizer.json: {e}"),
            )
        })?;
        let vocab_size = u32::try_from(tokenizer.get_vocab_size(false)).map_err(|_| {
            PluginError::invalid_config("tokenizer", format!("{path}: vocabulary too large"))
        })?;
        let added = tokenizer.get_added_tokens_decoder().into_keys().collect();
        Ok(Tokens {
            tokenizer,
            path: path.to_owned(),
            vocab_size,
            added,
            usable: vec![None; vocab_size as usize],
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The token ids of `text` alone: `add_special_tokens = false`, so no BOS/EOS
    /// and no chat template. This is the count every dataset plugin reports in
    /// `Prompt::input_tokens` (like `len(tokenizer.encode(text, add_special_tokens=False))`
    /// in Python); an engine adding a BOS token or a chat template sends more.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, PluginError> {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| self.error(format!("cannot encode text: {e}")))
    }

    /// `encode(text).len()`.
    pub fn count(&self, text: &str) -> Result<u32, PluginError> {
        Ok(self.encode(text)?.len() as u32)
    }

    /// The text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, PluginError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| self.error(format!("cannot decode tokens: {e}")))
    }

    /// A random id whose text is usable in a prompt: a model vocabulary token,
    /// not an added or special token, whose text alone is non-empty, valid
    /// UTF-8 (no byte-level fragment of a longer character) and free of control
    /// characters other than newline and tab. Checked lazily and remembered.
    pub fn random_id(&mut self, rng: &mut crate::Rng) -> Result<u32, PluginError> {
        if self.vocab_size == 0 {
            return Err(self.error("the vocabulary is empty".into()));
        }
        // A real vocabulary is mostly usable; give up only if it plainly is not.
        for _ in 0..10_000 {
            let id = rng.below(u64::from(self.vocab_size)) as u32;
            let ok = match self.usable[id as usize] {
                Some(ok) => ok,
                None => {
                    let ok = !self.added.contains(&id)
                        && self.tokenizer.id_to_token(id).is_some()
                        && self.decode(&[id]).is_ok_and(|text| {
                            !text.trim().is_empty()
                                && !text.contains('\u{FFFD}')
                                && !text
                                    .chars()
                                    .any(|c| c.is_control() && c != '\n' && c != '\t')
                        });
                    self.usable[id as usize] = Some(ok);
                    ok
                }
            };
            if ok {
                return Ok(id);
            }
        }
        Err(self.error("found no token in 10000 draws whose text can be used in a prompt".into()))
    }

    /// `prefix` followed by random text, together exactly `target` tokens by
    /// [`count`](Self::count).
    ///
    /// Method: draw `target - count(prefix)` usable ids, decode them, and
    /// re-encode `prefix + text`. Merges across token boundaries usually make
    /// the re-encoded text shorter, occasionally longer; so draw more ids when
    /// it is short and drop ids from the end when it is long, and repeat. After
    /// 16 rounds without an exact hit the last id is also redrawn each round
    /// (breaking cycles where one id adds two tokens); after 512 rounds give up.
    pub fn text_of_length(
        &mut self,
        prefix: &str,
        target: u32,
        rng: &mut crate::Rng,
    ) -> Result<String, PluginError> {
        let prefix_len = self.count(prefix)?;
        if prefix_len > target {
            return Err(PluginError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "the prefix alone is {prefix_len} tokens, more than the {target} input tokens drawn"
                ),
            )
            .with_hint("lengthen the input length distribution or shorten the prefix"));
        }
        let mut ids: Vec<u32> = Vec::with_capacity(target as usize);
        for _ in prefix_len..target {
            ids.push(self.random_id(rng)?);
        }
        for round in 0..512 {
            let text = format!("{prefix}{}", self.decode(&ids)?);
            let len = self.count(&text)?;
            if len == target {
                return Ok(text);
            }
            if round >= 16 && !ids.is_empty() {
                ids.pop();
                ids.push(self.random_id(rng)?);
            }
            if len < target {
                for _ in len..target {
                    ids.push(self.random_id(rng)?);
                }
            } else {
                let drop = ((len - target) as usize).min(ids.len());
                ids.truncate(ids.len() - drop);
            }
        }
        Err(self.error(format!(
            "could not build text of exactly {target} tokens in 512 rounds"
        )))
    }

    fn error(&self, message: String) -> PluginError {
        PluginError::new(
            ErrorCode::Other,
            format!("tokenizer {}: {message}", self.path),
        )
    }
}
