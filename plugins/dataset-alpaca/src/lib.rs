//! `dataset-alpaca`: prompts from an Alpaca JSON file.
//!
//! The file is a JSON array of `{ "instruction": …, "input": …, "output": … }`
//! (Stanford Alpaca's `alpaca_data.json` and its many derivatives; `input`
//! and `output` may be missing or empty). Each record becomes a text prompt
//! through `template` (`{instruction}` and `{input}` are replaced), or
//! `template_no_input` when `input` is empty. With a tokenizer, each prompt
//! asks for as many output tokens as its `output` has, its `input_tokens` is
//! its exact count (text alone, no special tokens), and the length filters
//! apply (all off by default); without one, every prompt asks for
//! `max_output_tokens`. Seeded shuffle, then the first `num_prompts`.

use dataset_common::{
    FilterDefaults, Record, Selection, load_tokenizer, optional_string, read_json,
};
use llem_sdk::{
    Config, Dataset, ErrorCode, LoadRequest, OptionSpec, OptionType, Plugin, PluginError,
    PluginInfo, PluginKind, Prompt, PromptBody,
};
use serde::Deserialize;
use serde_json::Value;

const TEMPLATE: &str = "{instruction}\n\n{input}";
const TEMPLATE_NO_INPUT: &str = "{instruction}";

pub struct AlpacaDataset {
    file: String,
    tokenizer: Option<String>,
    template: Template,
    template_no_input: Template,
    selection: Selection,
}

#[derive(Deserialize)]
struct Entry {
    instruction: String,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    output: Option<String>,
}

impl Plugin for AlpacaDataset {
    fn describe() -> PluginInfo {
        let mut options = vec![
            OptionSpec::required(
                "file",
                OptionType::Path,
                "Alpaca JSON file: an array of {instruction, input, output} (granted to the plugin read-only, that file alone)",
            ),
            OptionSpec::with_default(
                "tokenizer",
                OptionType::Path,
                Value::Null,
                "Hugging Face tokenizer.json for lengths and filters; unset = the model's tokenizer, if any",
            ),
            OptionSpec::with_default(
                "template",
                OptionType::String,
                TEMPLATE,
                "Prompt text for a record with an input; {instruction} and {input} are replaced",
            ),
            OptionSpec::with_default(
                "template_no_input",
                OptionType::String,
                TEMPLATE_NO_INPUT,
                "Prompt text for a record whose input is empty; {instruction} is replaced",
            ),
        ];
        options.extend(Selection::options(FilterDefaults::OFF));
        PluginInfo {
            name: "dataset-alpaca".into(),
            kind: PluginKind::Dataset,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Prompts from an Alpaca JSON file (instruction, input, output)".into(),
            options,
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let file: String = config.require("file")?;
        if file.is_empty() {
            return Err(PluginError::invalid_config("file", "must name a file"));
        }
        let template = |key: &str, default: &str, allowed: &[&str]| {
            let text: String = config.optional(key)?.unwrap_or_else(|| default.into());
            Template::parse(key, &text, allowed)
        };
        Ok(AlpacaDataset {
            file,
            tokenizer: optional_string(&config, "tokenizer")?,
            template: template("template", TEMPLATE, &["instruction", "input"])?,
            template_no_input: template("template_no_input", TEMPLATE_NO_INPUT, &["instruction"])?,
            selection: Selection::from_config(&config, FilterDefaults::OFF)?,
        })
    }
}

impl Dataset for AlpacaDataset {
    fn load(&mut self, request: &LoadRequest) -> Result<Vec<Prompt>, PluginError> {
        let tokens = load_tokenizer(self.tokenizer.as_deref(), request)?;
        let entries: Vec<Entry> = read_json(&self.file, "file")?;
        let total = entries.len();
        let records: Vec<Record> = entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let input = entry.input.unwrap_or_default();
                let text = if input.trim().is_empty() {
                    self.template_no_input.render(&entry.instruction, "")
                } else {
                    self.template.render(&entry.instruction, &input)
                };
                Record {
                    id: index.to_string(),
                    body: PromptBody::Text(text),
                    reply: entry.output,
                }
            })
            .collect();
        if tokens.is_none() && self.selection.filters() {
            llem_sdk::host::warn(
                "no tokenizer (neither `tokenizer` nor the model's): length filters are not applied \
                 and every prompt asks for max_output_tokens",
            );
        }
        let (prompts, counts) = self.selection.select(records, tokens.as_ref(), request)?;
        llem_sdk::host::info(&format!(
            "{}: {total} records, {} dropped by the length filters, {} prompts",
            self.file, counts.filtered, counts.kept
        ));
        if prompts.is_empty() {
            return Err(PluginError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "{}: no prompt left ({total} records, {} dropped by the length filters)",
                    self.file, counts.filtered
                ),
            ));
        }
        Ok(prompts)
    }
}

/// Literal text and `{name}` placeholders; `{{` and `}}` are literal braces.
#[derive(Debug, Clone)]
struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Instruction,
    Input,
}

impl Template {
    fn parse(key: &str, text: &str, allowed: &[&str]) -> Result<Self, PluginError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    let part = match name.as_str() {
                        "instruction" if allowed.contains(&"instruction") => Part::Instruction,
                        "input" if allowed.contains(&"input") => Part::Input,
                        _ => {
                            return Err(PluginError::invalid_config(
                                key,
                                format!(
                                    "unknown placeholder {{{name}}}; this template takes {} (write {{{{ and }}}} for literal braces)",
                                    allowed
                                        .iter()
                                        .map(|a| format!("{{{a}}}"))
                                        .collect::<Vec<_>>()
                                        .join(" and ")
                                ),
                            ));
                        }
                    };
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                    parts.push(part);
                }
                c => literal.push(c),
            }
        }
        parts.push(Part::Text(literal));
        Ok(Template { parts })
    }

    fn render(&self, instruction: &str, input: &str) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_str(),
                Part::Instruction => instruction,
                Part::Input => input,
            })
            .collect()
    }
}

llem_sdk::export_dataset!(AlpacaDataset);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn templates() {
        let t = Template::parse(
            "template",
            "### {instruction}\n{{x}}: {input}",
            &["instruction", "input"],
        )
        .unwrap();
        assert_eq!(t.render("Do", "this"), "### Do\n{x}: this");
        let err = Template::parse(
            "template_no_input",
            "{instruction} {input}",
            &["instruction"],
        )
        .unwrap_err();
        assert!(err.message.contains("{input}"), "{}", err.message);
        assert_eq!(err.key.as_deref(), Some("template_no_input"));
    }
}
