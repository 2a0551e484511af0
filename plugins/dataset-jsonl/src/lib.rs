//! `dataset-jsonl`: prompts from a JSON Lines file.
//!
//! This is also the SDK's worked example: one source file, built as a WASM
//! component (`cargo build --target wasm32-wasip2`) or a native library
//! (`cargo build`), both loaded by the same kernel with the same results.
//!
//! Each line is a JSON object. The prompt is taken from `prompt_field`, or,
//! when that is `auto`, from the first of `messages`, `conversations`,
//! `prompt`, `text`, `instruction`, `question`, `input` present on the line.
//! A list of `{role, content}` (or ShareGPT's `{from, value}`) becomes a chat
//! prompt; a string becomes a text prompt.

use llem_sdk::{
    ChatMessage, Config, Dataset, LoadRequest, OptionSpec, OptionType, Plugin, PluginError,
    PluginInfo, PluginKind, Prompt, PromptBody,
};
use serde_json::Value;

const AUTO_FIELDS: &[&str] = &[
    "messages",
    "conversations",
    "prompt",
    "text",
    "instruction",
    "question",
    "input",
];

pub struct JsonlDataset {
    path: String,
    prompt_field: String,
    id_field: Option<String>,
    max_output_tokens: u32,
    shuffle: bool,
}

impl Plugin for JsonlDataset {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "dataset-jsonl".into(),
            kind: PluginKind::Dataset,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Prompts from a JSON Lines file (text or chat)".into(),
            options: vec![
                OptionSpec::required(
                    "file",
                    OptionType::Path,
                    "JSON Lines file (granted to the plugin read-only, that file alone)",
                ),
                OptionSpec::with_default(
                    "prompt_field",
                    OptionType::String,
                    "auto",
                    "Field holding the prompt; `auto` tries messages, conversations, prompt, text, instruction, question, input",
                ),
                OptionSpec::with_default(
                    "id_field",
                    OptionType::String,
                    "",
                    "Field holding a request id; empty = line number",
                ),
                OptionSpec::with_default(
                    "max_output_tokens",
                    OptionType::Integer,
                    256,
                    "Output tokens to request per prompt",
                ),
                OptionSpec::with_default(
                    "shuffle",
                    OptionType::Boolean,
                    false,
                    "Shuffle with the experiment's seed before applying the limit",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let path: String = config.require("file")?;
        if path.is_empty() {
            return Err(PluginError::invalid_config("file", "must name a file"));
        }
        let id_field: String = config.optional("id_field")?.unwrap_or_default();
        Ok(JsonlDataset {
            path,
            prompt_field: config
                .optional("prompt_field")?
                .unwrap_or_else(|| "auto".into()),
            id_field: (!id_field.is_empty()).then_some(id_field),
            max_output_tokens: config.optional("max_output_tokens")?.unwrap_or(256),
            shuffle: config.optional("shuffle")?.unwrap_or(false),
        })
    }
}

impl Dataset for JsonlDataset {
    fn load(&mut self, request: &LoadRequest) -> Result<Vec<Prompt>, PluginError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            PluginError::io(format_args!("cannot read {}", self.path), &e).with_hint(
                "check `file`; when you set it, that file is granted to the plugin read-only",
            )
        })?;
        let mut prompts = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(line).map_err(|e| {
                PluginError::new(
                    llem_sdk::ErrorCode::InvalidConfig,
                    format!("{}:{line_no}: not a JSON object: {e}", self.path),
                )
            })?;
            prompts.push(self.prompt(&value, line_no)?);
        }
        if self.shuffle {
            shuffle(&mut prompts, request.seed);
        }
        if let Some(limit) = request.limit {
            prompts.truncate(limit as usize);
        }
        Ok(prompts)
    }
}

impl JsonlDataset {
    fn prompt(&self, value: &Value, line_no: usize) -> Result<Prompt, PluginError> {
        let field = if self.prompt_field == "auto" {
            AUTO_FIELDS.iter().copied().find(|f| value.get(f).is_some())
        } else {
            Some(self.prompt_field.as_str()).filter(|f| value.get(f).is_some())
        };
        let Some(field) = field else {
            return Err(PluginError::invalid_config(
                "prompt_field",
                format!(
                    "{}:{line_no}: no prompt field (looked for {})",
                    self.path,
                    if self.prompt_field == "auto" {
                        AUTO_FIELDS.join(", ")
                    } else {
                        self.prompt_field.clone()
                    }
                ),
            ));
        };
        let body = match &value[field] {
            Value::String(text) => PromptBody::Text(text.clone()),
            Value::Array(turns) => PromptBody::Chat(
                turns
                    .iter()
                    .map(|turn| chat_message(turn, &self.path, line_no))
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(PluginError::invalid_config(
                    "prompt_field",
                    format!(
                        "{}:{line_no}: field `{field}` is {other}, expected text or a list of messages",
                        self.path
                    ),
                ));
            }
        };
        let id = match self.id_field.as_deref().and_then(|f| value.get(f)) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => line_no.to_string(),
        };
        Ok(Prompt {
            id,
            body,
            input_tokens: None,
            max_output_tokens: Some(self.max_output_tokens),
        })
    }
}

fn chat_message(turn: &Value, path: &str, line_no: usize) -> Result<ChatMessage, PluginError> {
    // OpenAI style {role, content} or ShareGPT style {from, value}.
    let role = turn.get("role").or_else(|| turn.get("from"));
    let content = turn.get("content").or_else(|| turn.get("value"));
    match (
        role.and_then(Value::as_str),
        content.and_then(Value::as_str),
    ) {
        (Some(role), Some(content)) => Ok(ChatMessage {
            role: match role {
                "human" => "user".into(),
                "gpt" => "assistant".into(),
                other => other.into(),
            },
            content: content.into(),
        }),
        _ => Err(PluginError::invalid_config(
            "prompt_field",
            format!(
                "{path}:{line_no}: a message needs `role` and `content` (or `from` and `value`)"
            ),
        )),
    }
}

/// Fisher-Yates with SplitMix64: deterministic for a seed, identical on every
/// target (no platform RNG), so WASM and native builds give the same order.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

llem_sdk::export_dataset!(JsonlDataset);
