//! The workload llem runs when an experiment has a backend and names no
//! dataset, so that `llem run --plugins vllm,nvml --model Qwen/Qwen3-8B` runs
//! as typed.
//!
//! **What it is**: `dataset-synthetic` prompts of exactly 1024 input tokens
//! asking for 128 output tokens: the lengths of vLLM's `bench serve
//! --dataset-name random` defaults (`--random-input-len 1024
//! --random-output-len 128`), so figures can be set beside that public
//! benchmark's. 100 prompts (vLLM's default is 1000; `-n` changes it). The
//! prompts are random vocabulary tokens of the model's own tokenizer (a local
//! directory's, or the Hugging Face cache's for an id), seeded by
//! `experiment.seed`. Output lengths are limits: the engine may stop a request
//! early at end-of-sequence unless `load.ignore_eos` is set.
//!
//! A model whose context is shorter than 1024 + 128 tokens gets shorter
//! prompts (its context minus 128), and the plan says so.

/// The dataset plugin of the default workload (short name).
pub const DATASET: &str = "synthetic";
/// Input tokens per prompt (vLLM `bench serve` random dataset's default).
pub const INPUT_TOKENS: u64 = 1024;
/// Output-token limit per prompt (vLLM `bench serve` random dataset's default).
pub const OUTPUT_TOKENS: u64 = 128;
/// Prompts, unless `load.num_prompts` (`-n`) says otherwise.
pub const NUM_PROMPTS: u64 = 100;

/// The default workload for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultWorkload {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub num_prompts: u64,
    /// Why the lengths differ from the standard ones, when they do.
    pub adjusted: Option<String>,
}

impl DefaultWorkload {
    /// For a model of `context` tokens (from its config.json, when known) and
    /// `num_prompts` (`load.num_prompts`, when set).
    pub fn new(context: Option<u64>, num_prompts: Option<u64>) -> Self {
        let mut workload = DefaultWorkload {
            input_tokens: INPUT_TOKENS,
            output_tokens: OUTPUT_TOKENS,
            num_prompts: num_prompts.unwrap_or(NUM_PROMPTS),
            adjusted: None,
        };
        if let Some(context) = context.filter(|&c| c < INPUT_TOKENS + OUTPUT_TOKENS) {
            // Keep the output length when the context allows a useful prompt.
            let (input, output) = if context >= OUTPUT_TOKENS + 16 {
                (context - OUTPUT_TOKENS, OUTPUT_TOKENS)
            } else {
                (context / 2, context / 4)
            };
            workload.input_tokens = input.max(1);
            workload.output_tokens = output.max(1);
            workload.adjusted = Some(format!(
                "the model's context is {context} tokens, shorter than {INPUT_TOKENS} + {OUTPUT_TOKENS}"
            ));
        }
        workload
    }

    /// For `model` as found on this machine (its config.json's context length).
    pub fn for_model(model: &str, num_prompts: Option<u64>) -> Self {
        let context = crate::model::config_json(model)
            .as_ref()
            .and_then(crate::model::context_length);
        Self::new(context, num_prompts)
    }

    /// `--set` edits that configure `[plugins.synthetic]` as this workload.
    pub fn sets(&self) -> Vec<String> {
        vec![
            format!("{DATASET}.num_prompts={}", self.num_prompts),
            format!(
                "{DATASET}.input_tokens={{ dist = \"fixed\", value = {} }}",
                self.input_tokens
            ),
            format!(
                "{DATASET}.output_tokens={{ dist = \"fixed\", value = {} }}",
                self.output_tokens
            ),
        ]
    }

    /// One line for the user.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "the default workload: {} prompts of {} input tokens asking for {} output tokens \
             (dataset-synthetic; vLLM `bench serve` random-dataset lengths)",
            self.num_prompts, self.input_tokens, self.output_tokens
        );
        if let Some(why) = &self.adjusted {
            text.push_str(&format!("; shortened: {why}"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_lengths_for_a_long_context() {
        let w = DefaultWorkload::new(Some(32768), None);
        assert_eq!(
            (w.input_tokens, w.output_tokens, w.num_prompts),
            (1024, 128, 100)
        );
        assert_eq!(w.adjusted, None);
        assert_eq!(DefaultWorkload::new(None, Some(7)).num_prompts, 7);
    }

    #[test]
    fn a_short_context_shortens_the_prompts() {
        let w = DefaultWorkload::new(Some(512), None);
        assert_eq!((w.input_tokens, w.output_tokens), (384, 128));
        assert!(
            w.describe().contains("context is 512 tokens"),
            "{}",
            w.describe()
        );
        let tiny = DefaultWorkload::new(Some(64), None);
        assert_eq!((tiny.input_tokens, tiny.output_tokens), (32, 16));
    }

    #[test]
    fn sets_configure_the_synthetic_dataset() {
        let sets = DefaultWorkload::new(None, None).sets();
        assert_eq!(
            sets,
            [
                "synthetic.num_prompts=100",
                "synthetic.input_tokens={ dist = \"fixed\", value = 1024 }",
                "synthetic.output_tokens={ dist = \"fixed\", value = 128 }",
            ]
        );
    }
}
