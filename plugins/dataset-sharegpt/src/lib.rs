//! `dataset-sharegpt`: prompts from a ShareGPT JSON file.
//!
//! The file is a JSON array of `{ "id": …, "conversations": [ { "from": …,
//! "value": … }, … ] }` (e.g. `ShareGPT_V3_unfiltered_cleaned_split.json`).
//! Roles: `human`/`user` → user, `gpt`/`chatgpt`/`bard`/`bing`/`assistant`
//! → assistant, `system` → system.
//!
//! - `turns = "first"`: the first user turn that an assistant turn answers
//!   becomes a text prompt, and that answer is its reference reply (what vLLM's
//!   benchmark does with turns 0 and 1).
//! - `turns = "all"`: the conversation up to its last answered user turn
//!   becomes a chat prompt; the answer is the reference reply.
//!
//! Conversations with no answered user turn are skipped. Then, as vLLM's
//! `benchmark_serving.py` samples ShareGPT: seeded shuffle; with a tokenizer,
//! each prompt asks for as many output tokens as its reply has, and prompts
//! outside the length filters (by default vLLM's: prompt or reply under 4
//! tokens, prompt over 1024, prompt + reply over 2048) are dropped; the first
//! `num_prompts` that pass are kept. Tokens are counted without special tokens
//! (vLLM's `tokenizer(prompt)` adds BOS where the tokenizer has one, so its
//! counts can be one higher). A text prompt's `input_tokens` is its exact
//! count; a chat's is left unset (the engine's chat template adds tokens).

use dataset_common::{
    FilterDefaults, Record, Selection, load_tokenizer, optional_string, read_json,
};
use llem_sdk::{
    ChatMessage, Config, Dataset, ErrorCode, LoadRequest, OptionSpec, OptionType, Plugin,
    PluginError, PluginInfo, PluginKind, Prompt, PromptBody,
};
use serde::Deserialize;
use serde_json::Value;

pub struct ShareGptDataset {
    file: String,
    tokenizer: Option<String>,
    all_turns: bool,
    selection: Selection,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    id: Option<Value>,
    conversations: Vec<Turn>,
}

#[derive(Deserialize)]
struct Turn {
    from: String,
    value: String,
}

impl Plugin for ShareGptDataset {
    fn describe() -> PluginInfo {
        let mut options = vec![
            OptionSpec::required(
                "file",
                OptionType::Path,
                "ShareGPT JSON file: an array of {id, conversations: [{from, value}]} (granted to the plugin read-only, that file alone)",
            ),
            OptionSpec::with_default(
                "tokenizer",
                OptionType::Path,
                Value::Null,
                "Hugging Face tokenizer.json for lengths and filters; unset = the model's tokenizer, if any",
            ),
            OptionSpec::with_default(
                "turns",
                OptionType::String,
                "first",
                "`first`: the first answered user turn, as text; `all`: the conversation up to its last answered user turn, as chat",
            )
            .choices(&["first", "all"]),
        ];
        options.extend(Selection::options(FilterDefaults::VLLM));
        PluginInfo {
            name: "dataset-sharegpt".into(),
            kind: PluginKind::Dataset,
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Prompts from a ShareGPT JSON file, output lengths from the recorded replies".into(),
            options,
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let file: String = config.require("file")?;
        if file.is_empty() {
            return Err(PluginError::invalid_config("file", "must name a file"));
        }
        let turns: String = config.optional("turns")?.unwrap_or_else(|| "first".into());
        let all_turns = match turns.as_str() {
            "first" => false,
            "all" => true,
            other => {
                return Err(PluginError::invalid_config(
                    "turns",
                    format!("expected \"first\" or \"all\", got \"{other}\""),
                ));
            }
        };
        Ok(ShareGptDataset {
            file,
            tokenizer: optional_string(&config, "tokenizer")?,
            all_turns,
            selection: Selection::from_config(&config, FilterDefaults::VLLM)?,
        })
    }
}

impl Dataset for ShareGptDataset {
    fn load(&mut self, request: &LoadRequest) -> Result<Vec<Prompt>, PluginError> {
        let tokens = load_tokenizer(self.tokenizer.as_deref(), request)?;
        let entries: Vec<Entry> = read_json(&self.file, "file")?;
        let total = entries.len();
        let records: Vec<Record> = entries
            .into_iter()
            .enumerate()
            .filter_map(|(index, entry)| self.record(index, entry))
            .collect();
        let skipped = total - records.len();
        if tokens.is_none() && self.selection.filters() {
            llem_sdk::host::warn(
                "no tokenizer (neither `tokenizer` nor the model's): length filters are not applied \
                 and every prompt asks for max_output_tokens",
            );
        }
        let (prompts, counts) = self.selection.select(records, tokens.as_ref(), request)?;
        llem_sdk::host::info(&format!(
            "{}: {total} conversations, {skipped} without an answered user turn, \
             {} dropped by the length filters, {} prompts",
            self.file, counts.filtered, counts.kept
        ));
        if prompts.is_empty() {
            return Err(PluginError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "{}: no prompt left ({total} conversations, {skipped} without an answered user turn, \
                     {} dropped by the length filters)",
                    self.file, counts.filtered
                ),
            )
            .with_hint("check the file, or widen min_input_tokens/max_input_tokens/max_total_tokens"));
        }
        Ok(prompts)
    }
}

impl ShareGptDataset {
    fn record(&self, index: usize, entry: Entry) -> Option<Record> {
        let id = match entry.id {
            Some(Value::String(s)) => s,
            Some(Value::Null) | None => index.to_string(),
            Some(other) => other.to_string(),
        };
        let messages: Vec<ChatMessage> = entry
            .conversations
            .into_iter()
            .map(|turn| ChatMessage {
                role: role(&turn.from),
                content: turn.value,
            })
            .collect();
        // Indices of user turns answered by the next turn.
        let mut answered = (0..messages.len().saturating_sub(1))
            .filter(|&i| messages[i].role == "user" && messages[i + 1].role == "assistant");
        if self.all_turns {
            let last = answered.next_back()?;
            let reply = messages[last + 1].content.clone();
            let mut messages = messages;
            messages.truncate(last + 1);
            Some(Record {
                id,
                body: PromptBody::Chat(messages),
                reply: Some(reply),
            })
        } else {
            let first = answered.next()?;
            let mut messages = messages;
            let reply = std::mem::take(&mut messages[first + 1].content);
            let text = std::mem::take(&mut messages[first].content);
            Some(Record {
                id,
                body: PromptBody::Text(text),
                reply: Some(reply),
            })
        }
    }
}

fn role(from: &str) -> String {
    match from {
        "human" | "user" => "user".into(),
        "gpt" | "chatgpt" | "bard" | "bing" | "assistant" => "assistant".into(),
        other => other.into(),
    }
}

llem_sdk::export_dataset!(ShareGptDataset);
