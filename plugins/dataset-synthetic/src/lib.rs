//! `dataset-synthetic`: prompts of exact input and output token lengths.
//!
//! Lengths are drawn from distributions (`input_tokens`, `output_tokens`:
//! fixed, uniform or normal). Each prompt's text is built with the model's
//! `tokenizer.json` so that it encodes to exactly the drawn input length:
//! random vocabulary tokens (never added or special tokens) are decoded to
//! text, the text is re-encoded, and tokens are added or dropped until the
//! re-encoded length is the target (see `dataset_common::Tokens::text_of_length`).
//!
//! Lengths are counted as `encode(text, add_special_tokens = false)`: the text
//! alone, without the BOS/EOS tokens or chat template an engine may add.
//! `Prompt::input_tokens` is that exact count; `max_output_tokens` the drawn
//! output length (ask the backend to ignore EOS to get exactly that many).
//!
//! An optional shared prefix (`prefix` text, or `prefix_tokens` random tokens
//! shared by every prompt) starts each prompt and counts towards its length:
//! the material of prefix-caching studies.

use dataset_common::{Dist, Rng, load_tokenizer, optional_string, take_limit};
use llem_sdk::{
    Config, Dataset, ErrorCode, LoadRequest, OptionSpec, OptionType, Plugin, PluginError,
    PluginInfo, PluginKind, Prompt, PromptBody,
};
use serde_json::Value;

pub struct SyntheticDataset {
    tokenizer: Option<String>,
    num_prompts: u32,
    input_tokens: Dist,
    output_tokens: Dist,
    seed: u64,
    prefix: String,
    prefix_tokens: u32,
}

impl Plugin for SyntheticDataset {
    fn describe() -> PluginInfo {
        let dist_doc = "a table: { dist = \"fixed\", value = N }, { dist = \"uniform\", min = A, max = B } \
                        or { dist = \"normal\", mean = M, std = S } (normal also takes optional min/max; \
                        draws outside them are redrawn)";
        PluginInfo {
            name: "dataset-synthetic".into(),
            kind: PluginKind::Dataset,
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Prompts of exact input and output token lengths, built with the model's tokenizer"
                    .into(),
            options: vec![
                OptionSpec::with_default(
                    "tokenizer",
                    OptionType::Path,
                    Value::Null,
                    "Hugging Face tokenizer.json; unset = the model's tokenizer",
                ),
                OptionSpec::with_default(
                    "num_prompts",
                    OptionType::Integer,
                    100,
                    "How many prompts to generate",
                ),
                OptionSpec::with_default(
                    "input_tokens",
                    OptionType::Table,
                    Dist::fixed_json(1024),
                    &format!(
                        "Input length in tokens (the text alone, without special tokens or chat template): {dist_doc}"
                    ),
                ),
                OptionSpec::with_default(
                    "output_tokens",
                    OptionType::Table,
                    Dist::fixed_json(128),
                    &format!("Output length in tokens, requested as max_output_tokens: {dist_doc}"),
                ),
                OptionSpec::with_default(
                    "seed",
                    OptionType::Integer,
                    0,
                    "Added to the experiment's seed: the same seeds give the same prompts",
                ),
                OptionSpec::with_default(
                    "prefix",
                    OptionType::String,
                    "",
                    "Text every prompt starts with (counts towards input_tokens); for prefix-caching studies",
                ),
                OptionSpec::with_default(
                    "prefix_tokens",
                    OptionType::Integer,
                    0,
                    "Start every prompt with the same random text of this many tokens (counts towards input_tokens); 0 = none",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let dist = |key: &str, default: u32| -> Result<Dist, PluginError> {
            match config.get(key) {
                None | Some(Value::Null) => Ok(Dist::Fixed(default)),
                Some(value) => Dist::parse(key, value),
            }
        };
        let prefix = optional_string(&config, "prefix")?.unwrap_or_default();
        let prefix_tokens: u32 = config.optional("prefix_tokens")?.unwrap_or(0);
        if !prefix.is_empty() && prefix_tokens > 0 {
            return Err(PluginError::invalid_config(
                "prefix_tokens",
                "set either `prefix` (text) or `prefix_tokens` (random), not both",
            ));
        }
        let seed: i64 = config.optional("seed")?.unwrap_or(0);
        Ok(SyntheticDataset {
            tokenizer: optional_string(&config, "tokenizer")?,
            num_prompts: config.optional("num_prompts")?.unwrap_or(100),
            input_tokens: dist("input_tokens", 1024)?,
            output_tokens: dist("output_tokens", 128)?,
            seed: seed as u64,
            prefix,
            prefix_tokens,
        })
    }
}

impl Dataset for SyntheticDataset {
    fn load(&mut self, request: &LoadRequest) -> Result<Vec<Prompt>, PluginError> {
        let Some(mut tokens) = load_tokenizer(self.tokenizer.as_deref(), request)? else {
            return Err(PluginError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "needs a tokenizer to build prompts of exact lengths, and neither the plugin's \
                     `tokenizer` option nor the model ({}) gives one",
                    request.model
                ),
            )
            .with_hint("set `tokenizer` to the model's tokenizer.json"));
        };
        let seed = request.seed.wrapping_add(self.seed);
        let count = take_limit(self.num_prompts, request).unwrap_or(self.num_prompts as usize);

        // Independent streams: lengths, the shared prefix, and each prompt's
        // text, so a retry inside one prompt never shifts the others.
        let mut lengths = Rng::stream(seed, u64::MAX);
        let prefix = if self.prefix_tokens > 0 {
            tokens.text_of_length("", self.prefix_tokens, &mut Rng::stream(seed, u64::MAX - 1))?
        } else {
            self.prefix.clone()
        };
        let mut prompts = Vec::with_capacity(count);
        for index in 0..count {
            let input = self.input_tokens.sample(&mut lengths);
            let output = self.output_tokens.sample(&mut lengths);
            let text = tokens
                .text_of_length(&prefix, input, &mut Rng::stream(seed, index as u64))
                .map_err(|e| PluginError {
                    message: format!("prompt {index}: {}", e.message),
                    ..e
                })?;
            prompts.push(Prompt {
                id: index.to_string(),
                body: PromptBody::Text(text),
                input_tokens: Some(input),
                max_output_tokens: Some(output),
            });
        }
        Ok(prompts)
    }
}

llem_sdk::export_dataset!(SyntheticDataset);
