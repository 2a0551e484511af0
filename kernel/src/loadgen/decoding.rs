//! How every request decodes, decided once by the kernel (`[load]`
//! temperature, top_p, seed, max_tokens, ignore_eos) and sent explicitly to
//! every engine — server request bodies and offline worker messages alike —
//! so that engines whose own defaults differ (vLLM samples at temperature 1.0
//! and stops completions at 16 tokens; TensorRT-LLM stops at 32; transformers
//! serve at 1024) run the same workload. Recorded in result.json.

use llem_sdk::Prompt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The decoding settings of one run's requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decoding {
    /// 0: greedy decoding.
    pub temperature: f64,
    /// Nucleus-sampling mass, in (0, 1]; 1 keeps every token.
    pub top_p: f64,
    /// Sampling seed sent with every request; `None`: not sent (the engine's
    /// own randomness). Greedy decoding does not use it.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Output-token limit of a prompt whose dataset sets none; a prompt's own
    /// `max_output_tokens` wins.
    pub max_tokens: u32,
    /// Ask the engine to ignore end-of-sequence: every request then produces
    /// exactly its output-token limit.
    pub ignore_eos: bool,
}

impl Default for Decoding {
    /// Greedy, top_p 1, no seed, 256 tokens, end-of-sequence honoured:
    /// the `[load]` defaults.
    fn default() -> Self {
        Decoding {
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
            max_tokens: llem_manifest::DEFAULT_MAX_TOKENS,
            ignore_eos: false,
        }
    }
}

impl Decoding {
    /// The settings `[load]` asks for.
    pub fn from_load(load: &llem_manifest::Load) -> Self {
        Decoding {
            temperature: load.temperature,
            top_p: load.top_p,
            seed: load.seed,
            max_tokens: load.max_tokens,
            ignore_eos: load.ignore_eos,
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// The output-token limit of `prompt`: its dataset's, else [`Self::max_tokens`].
    pub fn max_tokens_for(&self, prompt: &Prompt) -> u32 {
        prompt.max_output_tokens.unwrap_or(self.max_tokens)
    }

    /// Why these settings cannot be sent, naming the `[load]` key.
    pub fn check(&self) -> Result<(), String> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!(
                "temperature must be a number >= 0 (0: greedy), not {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], not {}", self.top_p));
        }
        if self.max_tokens == 0 {
            return Err("max_tokens must be at least 1".into());
        }
        Ok(())
    }

    /// The keys every request carries, for `prompt`: `max_tokens`,
    /// `temperature`, `top_p`, `seed` (only when set), and `ignore_eos` (only
    /// when true: not every server knows the key). Used for server bodies
    /// and worker `generate` lines alike.
    pub fn request_fields(&self, prompt: &Prompt, out: &mut Map<String, Value>) {
        out.insert("max_tokens".into(), self.max_tokens_for(prompt).into());
        out.insert("temperature".into(), number(self.temperature));
        out.insert("top_p".into(), number(self.top_p));
        if let Some(seed) = self.seed {
            out.insert("seed".into(), seed.into());
        }
        if self.ignore_eos {
            out.insert("ignore_eos".into(), Value::Bool(true));
        }
    }

    /// The keys beyond OpenAI's basics that [`Self::request_fields`] adds:
    /// what a strict server may refuse (see `engine::request_options`).
    pub fn optional_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.seed.is_some() {
            keys.push("seed");
        }
        if self.ignore_eos {
            keys.push("ignore_eos");
        }
        keys
    }
}

fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use llem_sdk::PromptBody;
    use serde_json::json;

    fn prompt(max: Option<u32>) -> Prompt {
        Prompt {
            id: "p".into(),
            body: PromptBody::Text("hi".into()),
            input_tokens: None,
            max_output_tokens: max,
        }
    }

    #[test]
    fn the_default_is_the_manifests_default() {
        let load = llem_manifest::Load::default();
        assert_eq!(Decoding::from_load(&load), Decoding::default());
        assert!(Decoding::default().is_greedy());
    }

    #[test]
    fn a_prompts_own_limit_wins_over_the_default() {
        let d = Decoding {
            max_tokens: 100,
            ..Decoding::default()
        };
        assert_eq!(d.max_tokens_for(&prompt(Some(7))), 7);
        assert_eq!(d.max_tokens_for(&prompt(None)), 100);
    }

    #[test]
    fn fields_are_explicit_and_seed_and_ignore_eos_only_when_set() {
        let mut out = Map::new();
        Decoding::default().request_fields(&prompt(None), &mut out);
        assert_eq!(
            Value::Object(out),
            json!({"max_tokens": 256, "temperature": 0.0, "top_p": 1.0})
        );
        let mut out = Map::new();
        let d = Decoding {
            temperature: 0.7,
            top_p: 0.9,
            seed: Some(3),
            max_tokens: 8,
            ignore_eos: true,
        };
        d.request_fields(&prompt(Some(5)), &mut out);
        assert_eq!(
            Value::Object(out),
            json!({"max_tokens": 5, "temperature": 0.7, "top_p": 0.9, "seed": 3, "ignore_eos": true})
        );
        // The optional keys are exactly those beyond OpenAI's basics.
        assert_eq!(d.optional_keys(), vec!["seed", "ignore_eos"]);
        assert!(Decoding::default().optional_keys().is_empty());
    }

    #[test]
    fn impossible_settings_are_refused() {
        let bad = |f: &dyn Fn(&mut Decoding)| {
            let mut d = Decoding::default();
            f(&mut d);
            d.check()
        };
        assert!(bad(&|_| {}).is_ok());
        assert!(bad(&|d| d.temperature = -0.1).is_err());
        assert!(bad(&|d| d.temperature = f64::NAN).is_err());
        assert!(bad(&|d| d.top_p = 0.0).is_err());
        assert!(bad(&|d| d.top_p = 1.01).is_err());
        assert!(bad(&|d| d.max_tokens = 0).is_err());
    }
}
