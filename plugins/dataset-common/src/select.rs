//! What the file-based dataset plugins (ShareGPT, Alpaca) share: records in
//! file order → seeded shuffle → token lengths → length filters → the first
//! `num_prompts` that pass (vLLM's benchmark samples ShareGPT the same way:
//! shuffle, then keep requests until it has enough).

use crate::{Tokens, shuffle, take_limit};
use llem_sdk::{Config, LoadRequest, OptionSpec, OptionType, PluginError, Prompt, PromptBody};

/// One prompt a file offers, before selection.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub body: PromptBody,
    /// The reference reply, whose token count becomes the output length.
    pub reply: Option<String>,
}

/// Defaults of the length filters (0 = off).
#[derive(Debug, Clone, Copy)]
pub struct FilterDefaults {
    pub min_input_tokens: u32,
    pub max_input_tokens: u32,
    pub min_output_tokens: u32,
    pub max_total_tokens: u32,
}

impl FilterDefaults {
    /// vLLM's `is_valid_sequence` (vllm/benchmarks/datasets.py; earlier
    /// `sample_sharegpt_requests` in benchmarks/benchmark_serving.py): drop
    /// prompts or replies under 4 tokens, prompts over 1024, and prompt + reply
    /// over 2048.
    pub const VLLM: FilterDefaults = FilterDefaults {
        min_input_tokens: 4,
        max_input_tokens: 1024,
        min_output_tokens: 4,
        max_total_tokens: 2048,
    };
    pub const OFF: FilterDefaults = FilterDefaults {
        min_input_tokens: 0,
        max_input_tokens: 0,
        min_output_tokens: 0,
        max_total_tokens: 0,
    };
}

/// How prompts are picked from the records.
#[derive(Debug, Clone)]
pub struct Selection {
    pub num_prompts: u32,
    pub shuffle: bool,
    pub seed: u64,
    /// Request `max_output_tokens` for every prompt instead of the reply's length.
    pub fixed_output: bool,
    pub max_output_tokens: u32,
    pub min_input_tokens: u32,
    pub max_input_tokens: u32,
    pub min_output_tokens: u32,
    pub max_output_tokens_filter: u32,
    pub max_total_tokens: u32,
}

/// What selection did, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub considered: usize,
    pub filtered: usize,
    pub kept: usize,
}

impl Selection {
    /// The options every file-based dataset plugin takes, after its own.
    pub fn options(defaults: FilterDefaults) -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default(
                "num_prompts",
                OptionType::Integer,
                0,
                "How many prompts to take (after shuffling and filtering); 0 = all",
            ),
            OptionSpec::with_default(
                "shuffle",
                OptionType::Boolean,
                true,
                "Shuffle with the experiment's seed (plus `seed`) before filtering and taking",
            ),
            OptionSpec::with_default(
                "seed",
                OptionType::Integer,
                0,
                "Added to the experiment's seed for the shuffle",
            ),
            OptionSpec::with_default(
                "output_len",
                OptionType::String,
                "reply",
                "`reply`: request as many output tokens as the recorded reply has (needs a tokenizer; \
                 without one, max_output_tokens); `fixed`: always max_output_tokens",
            )
            .choices(&["reply", "fixed"]),
            OptionSpec::with_default(
                "max_output_tokens",
                OptionType::Integer,
                256,
                "Output tokens to request when output_len = \"fixed\" or no tokenizer is available",
            ),
            OptionSpec::with_default(
                "min_input_tokens",
                OptionType::Integer,
                defaults.min_input_tokens,
                "Drop prompts shorter than this many tokens (needs a tokenizer); 0 = off",
            ),
            OptionSpec::with_default(
                "max_input_tokens",
                OptionType::Integer,
                defaults.max_input_tokens,
                "Drop prompts longer than this many tokens (needs a tokenizer); 0 = off",
            ),
            OptionSpec::with_default(
                "min_output_tokens",
                OptionType::Integer,
                defaults.min_output_tokens,
                "Drop prompts whose reply is shorter than this many tokens (needs a tokenizer; \
                 not applied with output_len = \"fixed\"); 0 = off",
            ),
            OptionSpec::with_default(
                "max_output_tokens_filter",
                OptionType::Integer,
                0,
                "Drop prompts whose output length is over this many tokens (needs a tokenizer); 0 = off",
            ),
            OptionSpec::with_default(
                "max_total_tokens",
                OptionType::Integer,
                defaults.max_total_tokens,
                "Drop prompts whose input + output length is over this many tokens (needs a tokenizer); 0 = off",
            ),
        ]
    }

    pub fn from_config(config: &Config, defaults: FilterDefaults) -> Result<Self, PluginError> {
        let u = |key: &str, default: u32| -> Result<u32, PluginError> {
            Ok(config.optional::<u32>(key)?.unwrap_or(default))
        };
        let output_len: String = config
            .optional("output_len")?
            .unwrap_or_else(|| "reply".into());
        let fixed_output = match output_len.as_str() {
            "reply" => false,
            "fixed" => true,
            other => {
                return Err(PluginError::invalid_config(
                    "output_len",
                    format!("expected \"reply\" or \"fixed\", got \"{other}\""),
                ));
            }
        };
        let seed: i64 = config.optional("seed")?.unwrap_or(0);
        let selection = Selection {
            num_prompts: u("num_prompts", 0)?,
            shuffle: config.optional("shuffle")?.unwrap_or(true),
            seed: seed as u64,
            fixed_output,
            max_output_tokens: u("max_output_tokens", 256)?,
            min_input_tokens: u("min_input_tokens", defaults.min_input_tokens)?,
            max_input_tokens: u("max_input_tokens", defaults.max_input_tokens)?,
            min_output_tokens: u("min_output_tokens", defaults.min_output_tokens)?,
            max_output_tokens_filter: u("max_output_tokens_filter", 0)?,
            max_total_tokens: u("max_total_tokens", defaults.max_total_tokens)?,
        };
        if selection.max_output_tokens == 0 {
            return Err(PluginError::invalid_config(
                "max_output_tokens",
                "must be ≥ 1",
            ));
        }
        if selection.max_input_tokens > 0 && selection.min_input_tokens > selection.max_input_tokens
        {
            return Err(PluginError::invalid_config(
                "max_input_tokens",
                format!(
                    "{} is less than min_input_tokens = {}",
                    selection.max_input_tokens, selection.min_input_tokens
                ),
            ));
        }
        Ok(selection)
    }

    /// Whether any length filter is on.
    pub fn filters(&self) -> bool {
        self.min_input_tokens > 0
            || self.max_input_tokens > 0
            || (self.min_output_tokens > 0 && !self.fixed_output)
            || self.max_output_tokens_filter > 0
            || self.max_total_tokens > 0
    }

    /// Whether a prompt of these lengths passes the filters.
    pub fn keeps(&self, input: u32, output: u32) -> bool {
        let on = |limit: u32| limit > 0;
        !(input < self.min_input_tokens
            || (!self.fixed_output && output < self.min_output_tokens)
            || (on(self.max_input_tokens) && input > self.max_input_tokens)
            || (on(self.max_output_tokens_filter) && output > self.max_output_tokens_filter)
            || (on(self.max_total_tokens)
                && u64::from(input) + u64::from(output) > u64::from(self.max_total_tokens)))
    }

    /// Shuffle, measure, filter and take. Without a tokenizer, nothing is
    /// measured or filtered and every prompt asks for `max_output_tokens`.
    pub fn select(
        &self,
        mut records: Vec<Record>,
        tokens: Option<&Tokens>,
        request: &LoadRequest,
    ) -> Result<(Vec<Prompt>, Counts), PluginError> {
        if self.shuffle {
            shuffle(&mut records, request.seed.wrapping_add(self.seed));
        }
        let limit = take_limit(self.num_prompts, request).unwrap_or(usize::MAX);
        let mut counts = Counts::default();
        let mut prompts = Vec::new();
        for record in records {
            if prompts.len() >= limit {
                break;
            }
            counts.considered += 1;
            let prompt = match tokens {
                None => Prompt {
                    id: record.id,
                    body: record.body,
                    input_tokens: None,
                    max_output_tokens: Some(self.max_output_tokens),
                },
                Some(tokens) => {
                    let input = input_tokens(tokens, &record.body)?;
                    let output = match (&record.reply, self.fixed_output) {
                        (Some(reply), false) => tokens.count(reply)?,
                        _ => self.max_output_tokens,
                    };
                    if !self.keeps(input, output) {
                        counts.filtered += 1;
                        continue;
                    }
                    Prompt {
                        id: record.id,
                        // A chat's length depends on the engine's chat template:
                        // only a text prompt's count is exact.
                        input_tokens: matches!(record.body, PromptBody::Text(_)).then_some(input),
                        body: record.body,
                        // An empty reply (0 tokens) still asks for one token.
                        max_output_tokens: Some(output.max(1)),
                    }
                }
            };
            prompts.push(prompt);
        }
        counts.kept = prompts.len();
        Ok((prompts, counts))
    }
}

/// A prompt's input length for the filters: a text's token count, or the sum
/// over a chat's message contents (without the chat template).
pub fn input_tokens(tokens: &Tokens, body: &PromptBody) -> Result<u32, PluginError> {
    match body {
        PromptBody::Text(text) => tokens.count(text),
        PromptBody::Chat(messages) => messages
            .iter()
            .map(|m| tokens.count(&m.content))
            .sum::<Result<u32, _>>(),
    }
}
