//! Parameters and forward FLOPs per token from a Hugging Face `config.json`,
//! achieved FLOP/s, MFU and energy per FLOP.
//!
//! **Formula** (forward pass only, per token; multiply-add = 2 FLOPs):
//!
//! ```text
//! FLOPs(token attending to c keys) = 2·N + 4·L·d_attn·c
//! ```
//!
//! * `N`: parameters the token multiplies by (every decoder layer's weights, the
//!   experts it is routed to, the output projection — tied or not — but not the
//!   input embedding table, which is a lookup). Kaplan et al. 2020, "Scaling
//!   Laws for Neural Language Models", Table 1: `C_forward ≈ 2N + 2·n_layer·
//!   n_ctx·d_attn`.
//! * `4·L·d_attn·c`: attention scores `QKᵀ` (2·d_attn·c) and their weighted sum
//!   of `V` (2·d_attn·c) per layer, `d_attn = n_heads × head_dim` (query heads:
//!   grouped-query attention shares keys but every query head still attends).
//!   Chowdhery et al. 2022 (PaLM), Appendix B counts the same two products
//!   (`6N + 12·L·H·Q·T` for training = 3 × forward with `T` keys); Kaplan's
//!   table counts only `QKᵀ`.
//! * **Prefill** of a `P`-token prompt with causal masking: position `p`
//!   attends to `p` keys, on average `(P + 1)/2`, so per prompt token
//!   `2N + 2·L·d_attn·(P + 1)`.
//! * **Decode**: the step producing output token `i ≥ 2` processes position
//!   `P + i − 1` against `P + i − 1` keys: `2N + 4·L·d_attn·(P + i − 1)`. The
//!   first output token comes out of prefill.
//!
//! Not counted: norms, activations, softmax, rotary embeddings (each O(d) per
//! token, < 0.1 % at these sizes), and the logits of prompt positions an
//! engine skips (the 2N per prompt token includes the output projection, an
//! upper bound by `2·d·vocab` per prompt token).

mod peaks;

pub use peaks::{GpuPeak, peak_for};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AnalysisError;

/// Words for result.json.
pub const FORMULA: &str = "forward FLOPs per token = 2·N + 4·L·d_attn·c (c = keys attended; \
     prefill averages c = (P+1)/2); N excludes the input embedding, includes the output \
     projection; Kaplan et al. 2020 Table 1, PaLM (Chowdhery et al. 2022) Appendix B";

/// Mixture-of-experts feed-forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoeShape {
    /// `num_experts` (Qwen-MoE, OLMoE) or `num_local_experts` (Mixtral).
    pub num_experts: u64,
    /// `num_experts_per_tok`.
    pub experts_per_token: u64,
    /// `moe_intermediate_size`, else `intermediate_size`.
    pub expert_intermediate_size: u64,
    /// `shared_expert_intermediate_size` (Qwen2-MoE), always active.
    pub shared_expert_intermediate_size: Option<u64>,
}

/// The dimensions the FLOP count needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    pub model_type: Option<String>,
    pub hidden_size: u64,
    pub num_layers: u64,
    /// Dense MLP width (`intermediate_size`).
    pub intermediate_size: u64,
    pub num_heads: u64,
    /// `num_key_value_heads`, else `num_heads` (multi-head attention).
    pub num_kv_heads: u64,
    /// `head_dim`, else `hidden_size / num_heads`.
    pub head_dim: u64,
    pub vocab_size: u64,
    /// `tie_word_embeddings` (HF's default: true when absent).
    pub tie_word_embeddings: bool,
    /// Q/K/V projections carry biases (`attention_bias`; Qwen2 always).
    pub qkv_bias: bool,
    /// Gated MLP (SwiGLU: gate, up, down = 3 matrices) rather than 2.
    pub gated_mlp: bool,
    pub moe: Option<MoeShape>,
}

/// Parameter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCount {
    /// Every weight, experts and embeddings included (tied counted once).
    pub total: u64,
    /// Weights one token uses (routed experts only), embeddings included.
    pub active: u64,
    /// The input embedding table, `vocab × hidden`.
    pub embedding: u64,
    /// `N` of the FLOP formula: `active − embedding + vocab × hidden` (the
    /// output projection is a matmul even when its weights are tied).
    pub forward_matmul: u64,
}

fn get_u64(cfg: &Value, key: &str) -> Result<Option<u64>, AnalysisError> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            AnalysisError::Config(format!("`{key}` is {v}, expected a non-negative integer"))
        }),
    }
}

fn need_u64(cfg: &Value, key: &str) -> Result<u64, AnalysisError> {
    match get_u64(cfg, key)? {
        Some(0) => Err(AnalysisError::Config(format!("`{key}` is 0"))),
        Some(v) => Ok(v),
        None => Err(AnalysisError::Config(format!(
            "`{key}` is missing; FLOPs are counted for decoder-only transformers described \
             with Hugging Face's Llama-style keys (hidden_size, num_hidden_layers, \
             intermediate_size, num_attention_heads, vocab_size)"
        ))),
    }
}

/// Model types whose MLP has two matrices (up, down) rather than SwiGLU's three.
const UNGATED_MLP: &[&str] = &["gpt_neox", "phi", "gpt_bigcode", "starcoder2", "opt"];

impl ModelShape {
    /// Read the shape from a parsed `config.json`. A multimodal config's
    /// `text_config` is used when the top level has no `hidden_size`.
    pub fn from_hf_config(config: &Value) -> Result<Self, AnalysisError> {
        let cfg = match config.get("text_config") {
            Some(t) if config.get("hidden_size").is_none() && t.is_object() => t,
            _ => config,
        };
        if cfg.get("kv_lora_rank").is_some() {
            return Err(AnalysisError::Config(
                "multi-head latent attention (`kv_lora_rank`, DeepSeek) is not modelled".into(),
            ));
        }
        let model_type = cfg
            .get("model_type")
            .or_else(|| config.get("model_type"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let hidden_size = need_u64(cfg, "hidden_size")?;
        let num_heads = need_u64(cfg, "num_attention_heads")?;
        let head_dim = match get_u64(cfg, "head_dim")? {
            Some(h) if h > 0 => h,
            _ => hidden_size / num_heads,
        };
        let num_experts = match get_u64(cfg, "num_experts")? {
            Some(n) => Some(n),
            None => get_u64(cfg, "num_local_experts")?,
        };
        let intermediate_size = need_u64(cfg, "intermediate_size")?;
        let moe = match num_experts {
            Some(n) if n > 1 => Some(MoeShape {
                num_experts: n,
                experts_per_token: need_u64(cfg, "num_experts_per_tok")?,
                expert_intermediate_size: get_u64(cfg, "moe_intermediate_size")?
                    .unwrap_or(intermediate_size),
                shared_expert_intermediate_size: get_u64(cfg, "shared_expert_intermediate_size")?
                    .filter(|&s| s > 0),
            }),
            _ => None,
        };
        let qwen2 = model_type
            .as_deref()
            .is_some_and(|t| t.starts_with("qwen2"));
        Ok(Self {
            gated_mlp: !model_type
                .as_deref()
                .is_some_and(|t| UNGATED_MLP.contains(&t)),
            model_type,
            hidden_size,
            num_layers: need_u64(cfg, "num_hidden_layers")?,
            intermediate_size,
            num_heads,
            num_kv_heads: get_u64(cfg, "num_key_value_heads")?.unwrap_or(num_heads),
            head_dim,
            vocab_size: need_u64(cfg, "vocab_size")?,
            tie_word_embeddings: config
                .get("tie_word_embeddings")
                .or_else(|| cfg.get("tie_word_embeddings"))
                .and_then(Value::as_bool)
                .unwrap_or(true),
            qkv_bias: cfg
                .get("attention_bias")
                .and_then(Value::as_bool)
                .unwrap_or(qwen2),
            moe,
        })
    }

    /// `n_heads × head_dim`: the width of the attention products.
    pub fn d_attn(&self) -> u64 {
        self.num_heads * self.head_dim
    }

    /// Parameters, counted matrix by matrix: per layer Q (d × H·hd), K and V
    /// (d × H_kv·hd each), O (H·hd × d), the MLP (3 or 2 matrices of d × d_ff,
    /// per expert for MoE, plus the router d × E), two norm vectors (d each);
    /// a final norm (d); the embedding (vocab × d) and, untied, the output
    /// projection (vocab × d).
    pub fn parameters(&self) -> ParamCount {
        let d = self.hidden_size;
        let (q, kv) = (
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
        );
        let bias = if self.qkv_bias { q + 2 * kv } else { 0 };
        let attn = d * q + 2 * d * kv + q * d + bias;
        let mats = if self.gated_mlp { 3 } else { 2 };
        let (mlp_total, mlp_active) = match &self.moe {
            None => {
                let m = mats * d * self.intermediate_size;
                (m, m)
            }
            Some(moe) => {
                let expert = mats * d * moe.expert_intermediate_size;
                let router = d * moe.num_experts;
                // Qwen2-MoE: a shared expert and its 1-wide gate, always active.
                let shared = moe
                    .shared_expert_intermediate_size
                    .map_or(0, |s| mats * d * s + d);
                (
                    expert * moe.num_experts + router + shared,
                    expert * moe.experts_per_token + router + shared,
                )
            }
        };
        let norms = 2 * d;
        let per_layer_total = attn + mlp_total + norms;
        let per_layer_active = attn + mlp_active + norms;
        let embedding = self.vocab_size * d;
        let lm_head = if self.tie_word_embeddings {
            0
        } else {
            embedding
        };
        let total = self.num_layers * per_layer_total + d + embedding + lm_head;
        let active = self.num_layers * per_layer_active + d + embedding + lm_head;
        ParamCount {
            total,
            active,
            embedding,
            // Decoder weights plus one vocab × d output matmul, tied or not.
            forward_matmul: active - embedding - lm_head + self.vocab_size * d,
        }
    }

    /// Forward FLOPs per prompt token of a `prompt_len`-token prompt:
    /// `2N + 2·L·d_attn·(P + 1)`.
    pub fn prefill_flops_per_token(&self, prompt_len: u64) -> f64 {
        let n = self.parameters().forward_matmul as f64;
        2.0 * n + 2.0 * (self.num_layers * self.d_attn()) as f64 * (prompt_len + 1) as f64
    }

    /// Forward FLOPs of one decode step whose token attends to `context` keys:
    /// `2N + 4·L·d_attn·context`.
    pub fn decode_flops_per_token(&self, context: u64) -> f64 {
        let n = self.parameters().forward_matmul as f64;
        2.0 * n + 4.0 * (self.num_layers * self.d_attn()) as f64 * context as f64
    }

    /// Forward FLOPs of one request: prefill of `input` tokens (which yields the
    /// first output token) and `output − 1` decode steps.
    pub fn request_flops(&self, input: u64, output: u64) -> RequestFlops {
        let two_n = 2.0 * self.parameters().forward_matmul as f64;
        let la = (self.num_layers * self.d_attn()) as f64;
        let (p, steps) = (input as f64, output.saturating_sub(1) as f64);
        let prefill = p * two_n + 2.0 * la * p * (p + 1.0);
        // Σ_{i=2..n} (P + i − 1) = (n − 1)·P + n(n − 1)/2 keys.
        let keys = steps * p + (steps + 1.0) * steps / 2.0;
        let decode = steps * two_n + 4.0 * la * keys;
        RequestFlops {
            prefill,
            decode,
            total: prefill + decode,
        }
    }

    /// Sum of [`ModelShape::request_flops`] over `(input, output)` token counts.
    pub fn run_flops(&self, requests: &[(u64, u64)]) -> RequestFlops {
        let mut sum = RequestFlops::default();
        for &(i, o) in requests {
            let f = self.request_flops(i, o);
            sum.prefill += f.prefill;
            sum.decode += f.decode;
            sum.total += f.total;
        }
        sum
    }
}

/// Forward FLOPs split by phase.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RequestFlops {
    pub prefill: f64,
    pub decode: f64,
    pub total: f64,
}

/// How well a run used the hardware, and what a FLOP cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlopsEfficiency {
    /// Forward FLOPs of the requests counted, over the window given.
    pub flops: f64,
    pub seconds: f64,
    /// `flops / seconds`.
    pub achieved_flops_per_s: Option<f64>,
    /// The table's peak for the GPU, when known.
    pub peak: Option<GpuPeak>,
    pub gpus: u32,
    /// Model FLOPs utilisation: achieved / (peak × gpus); `None` without a peak.
    pub mfu: Option<f64>,
    /// Energy over the same window / `flops` (J/FLOP; ×10¹² for pJ/FLOP).
    pub joules_per_flop: Option<f64>,
    pub formula: String,
}

/// Achieved FLOP/s, MFU against [`peak_for`]`(gpu_name)` × `gpus`, and J/FLOP.
/// `flops`, `seconds` and `energy_j` must cover the same window.
pub fn efficiency(
    flops: f64,
    seconds: f64,
    energy_j: Option<f64>,
    gpu_name: Option<&str>,
    gpus: u32,
) -> FlopsEfficiency {
    let achieved = (seconds > 0.0).then(|| flops / seconds);
    let peak = gpu_name.and_then(peak_for);
    let mfu = match (achieved, &peak) {
        (Some(a), Some(p)) if gpus > 0 => Some(a / (p.bf16_dense_tflops * 1e12 * f64::from(gpus))),
        _ => None,
    };
    FlopsEfficiency {
        flops,
        seconds,
        achieved_flops_per_s: achieved,
        peak,
        gpus,
        mfu,
        joules_per_flop: energy_j.filter(|_| flops > 0.0).map(|e| e / flops),
        formula: FORMULA.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// meta-llama/Llama-3.1-8B config.json (the values that matter).
    fn llama_8b() -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_attention_heads": 32,
            "num_hidden_layers": 32,
            "num_key_value_heads": 8,
            "vocab_size": 128256,
            "tie_word_embeddings": false,
            "attention_bias": false,
            "torch_dtype": "bfloat16"
        })
    }

    #[test]
    fn llama_3_1_8b_parameters_by_hand() -> Result<(), AnalysisError> {
        let s = ModelShape::from_hf_config(&llama_8b())?;
        assert_eq!(s.head_dim, 128); // 4096 / 32
        let p = s.parameters();
        // Per layer: Q 4096·4096 = 16,777,216; K, V 4096·1024 = 4,194,304 each;
        // O 16,777,216 → attention 41,943,040. MLP 3·4096·14336 = 176,160,768.
        // Norms 2·4096 = 8,192. Layer = 218,112,000; × 32 = 6,979,584,000.
        // Final norm 4,096. Embedding 128,256·4096 = 525,336,576, untied head the same.
        // Total = 6,979,584,000 + 4,096 + 2·525,336,576 = 8,030,261,248 (published: 8.03 B).
        assert_eq!(p.total, 8_030_261_248);
        assert_eq!(p.active, p.total);
        assert_eq!(p.embedding, 525_336_576);
        assert!((p.total as f64 / 1e9 - 8.03).abs() < 0.005);
        // N = 8,030,261,248 − 525,336,576 (embedding lookup) = 7,504,924,672.
        assert_eq!(p.forward_matmul, 7_504_924_672);
        Ok(())
    }

    #[test]
    fn qwen2_5_7b_parameters_by_hand() -> Result<(), AnalysisError> {
        // Qwen/Qwen2.5-7B config.json; Qwen2 has Q/K/V biases though its config does not say.
        let cfg = json!({
            "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
            "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
            "vocab_size": 152064, "tie_word_embeddings": false
        });
        let p = ModelShape::from_hf_config(&cfg)?.parameters();
        // head_dim 3584 / 28 = 128. Q, O 3584² = 12,845,056 each; K, V 3584·512 =
        // 1,835,008 each; biases 3584 + 2·512 = 4,608 → attention 29,364,736.
        // MLP 3·3584·18944 = 203,685,888; norms 7,168 → layer 233,057,792; × 28 =
        // 6,525,618,176; + final norm 3,584 = 6,525,621,760 non-embedding (published 6.53 B).
        // Embedding 152,064·3584 = 544,997,376, twice (untied) → 7,615,616,512 (published 7.61 B).
        assert_eq!(p.total - 2 * p.embedding, 6_525_621_760);
        assert_eq!(p.total, 7_615_616_512);
        Ok(())
    }

    #[test]
    fn llama_3_1_8b_flops_by_hand() -> Result<(), AnalysisError> {
        let s = ModelShape::from_hf_config(&llama_8b())?;
        // 2N = 15,009,849,344; L·d_attn = 32·4096 = 131,072.
        // Prefill, P = 1000: 2·131,072·1001 = 262,406,144 → 15,272,255,488 per token.
        assert_eq!(s.prefill_flops_per_token(1000), 15_272_255_488.0);
        // Decode at 1000 keys: 4·131,072·1000 = 524,288,000 → 15,534,137,344.
        assert_eq!(s.decode_flops_per_token(1000), 15_534_137_344.0);
        // One request, 1000 in, 101 out:
        // prefill = 1000·15,009,849,344 + 2·131,072·1000·1001 = 15,272,255,488,000;
        // decode  = 100·15,009,849,344 + 524,288·(100·1000 + 101·100/2 = 105,050)
        //         = 1,500,984,934,400 + 55,076,454,400 = 1,556,061,388,800;
        // total   = 16,828,316,876,800.
        let f = s.request_flops(1000, 101);
        assert_eq!(f.prefill, 15_272_255_488_000.0);
        assert_eq!(f.decode, 1_556_061_388_800.0);
        assert_eq!(f.total, 16_828_316_876_800.0);
        let two = s.run_flops(&[(1000, 101), (1000, 101)]);
        assert_eq!(two.total, 2.0 * 16_828_316_876_800.0);
        // One output token: prefill only.
        assert_eq!(s.request_flops(10, 1).decode, 0.0);
        Ok(())
    }

    #[test]
    fn efficiency_by_hand() {
        // 16,828,316,876,800 FLOPs in 2 s = 8.4141584384e12 FLOP/s. H100 SXM peak
        // 989.4e12: MFU = 8.4141584384 / 989.4 = 0.00850430406… 500 J / 1.68283168768e13
        // FLOPs = 2.9711825e-11 J/FLOP (29.7 pJ/FLOP).
        let e = efficiency(
            16_828_316_876_800.0,
            2.0,
            Some(500.0),
            Some("NVIDIA H100 80GB HBM3"),
            1,
        );
        assert_eq!(e.achieved_flops_per_s, Some(8.4141584384e12));
        assert!(e.mfu.is_some_and(|m| (m - 0.008_504_304_06).abs() < 1e-11));
        assert!(
            e.joules_per_flop
                .is_some_and(|j| (j - 2.971_182_5e-11).abs() < 1e-17)
        );
        // Two GPUs halve MFU; an unknown GPU gives none.
        let two = efficiency(16_828_316_876_800.0, 2.0, None, Some("NVIDIA H100 PCIe"), 2);
        assert!(
            two.mfu
                .is_some_and(|m| (m - 8.4141584384 / (2.0 * 756.0)).abs() < 1e-12)
        );
        assert_eq!(two.joules_per_flop, None);
        assert_eq!(efficiency(1.0, 1.0, None, Some("Voodoo 2"), 1).mfu, None);
    }

    #[test]
    fn moe_counts_routed_experts_only_when_active() -> Result<(), AnalysisError> {
        // A toy Qwen3-MoE-style config: d = 8, 2 layers, 4 heads of 2, 2 KV heads,
        // 4 experts (top-2) of width 16, vocab 10, tied.
        let cfg = json!({
            "model_type": "qwen3_moe", "hidden_size": 8, "num_hidden_layers": 2,
            "intermediate_size": 32, "moe_intermediate_size": 16, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 2, "vocab_size": 10, "num_experts": 4,
            "num_experts_per_tok": 2, "tie_word_embeddings": true
        });
        let s = ModelShape::from_hf_config(&cfg)?;
        let p = s.parameters();
        // Attention: Q 8·8 = 64, K, V 8·4 = 32 each, O 64 → 192.
        // Expert 3·8·16 = 384; router 8·4 = 32; norms 16.
        // Layer total = 192 + 4·384 + 32 + 16 = 1,776; active = 192 + 2·384 + 32 + 16 = 1,008.
        // × 2 layers + final norm 8 + embedding 80 (tied: no head):
        // total = 3,552 + 8 + 80 = 3,640; active = 2,016 + 8 + 80 = 2,104.
        assert_eq!((p.total, p.active), (3_640, 2_104));
        // N = 2,104 − 80 + 80 (tied head still multiplies) = 2,104.
        assert_eq!(p.forward_matmul, 2_104);
        Ok(())
    }

    #[test]
    fn missing_and_unsupported_configs_say_which_key() {
        let e = ModelShape::from_hf_config(&json!({"n_embd": 768, "n_layer": 12}));
        assert!(matches!(e, Err(AnalysisError::Config(m)) if m.contains("`hidden_size`")));
        let mut cfg = llama_8b();
        cfg["vocab_size"] = json!(-3);
        assert!(
            matches!(ModelShape::from_hf_config(&cfg), Err(AnalysisError::Config(m)) if m.contains("`vocab_size`"))
        );
        let mut cfg = llama_8b();
        cfg["kv_lora_rank"] = json!(512);
        assert!(ModelShape::from_hf_config(&cfg).is_err());
        // A multimodal wrapper: the text model's shape is used.
        let wrapped = json!({"model_type": "llava", "text_config": llama_8b()});
        assert!(
            ModelShape::from_hf_config(&wrapped)
                .is_ok_and(|s| s.parameters().total == 8_030_261_248)
        );
    }
}
