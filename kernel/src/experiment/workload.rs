//! `result.json`'s `workload` object: the decoding every request of the run
//! was sent with (decided once by the kernel from `[load]`, the same for
//! every engine), and how many prompts carried their own output-token limit.

use crate::loadgen::Decoding;
use llem_sdk::Prompt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSummary {
    /// temperature, top_p, seed (absent: not sent), max_tokens (the limit
    /// of prompts without their own), ignore_eos.
    pub decoding: Decoding,
    /// Prompts whose dataset set their output-token limit (it wins over
    /// `decoding.max_tokens`).
    pub prompts_with_own_max_tokens: usize,
    /// Prompts sent `decoding.max_tokens` as their limit.
    pub prompts_with_default_max_tokens: usize,
}

impl WorkloadSummary {
    pub fn new(load: &llem_manifest::Load, prompts: &[Prompt]) -> Self {
        let own = prompts
            .iter()
            .filter(|p| p.max_output_tokens.is_some())
            .count();
        WorkloadSummary {
            decoding: Decoding::from_load(load),
            prompts_with_own_max_tokens: own,
            prompts_with_default_max_tokens: prompts.len() - own,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llem_sdk::PromptBody;
    use serde_json::json;

    #[test]
    fn records_the_decoding_and_where_limits_came_from() {
        let load = llem_manifest::Load {
            temperature: 0.5,
            seed: Some(9),
            max_tokens: 100,
            ..llem_manifest::Load::default()
        };
        let prompt = |max| Prompt {
            id: "p".into(),
            body: PromptBody::Text("x".into()),
            input_tokens: None,
            max_output_tokens: max,
        };
        let summary = WorkloadSummary::new(&load, &[prompt(Some(5)), prompt(None), prompt(None)]);
        assert_eq!(
            serde_json::to_value(&summary).unwrap(),
            json!({
                "decoding": {"temperature": 0.5, "top_p": 1.0, "seed": 9, "max_tokens": 100,
                             "ignore_eos": false},
                "prompts_with_own_max_tokens": 1,
                "prompts_with_default_max_tokens": 2,
            })
        );
    }
}
