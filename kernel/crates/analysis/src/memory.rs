//! Accelerator memory an engine needs, estimated from the model's shape: the
//! weights at their stored precision (quantised decoder weights, embeddings
//! kept at the model's dtype) and the KV cache for the engine's batch limit
//! (`max_num_seqs × max_model_len` tokens), per tensor-parallel rank.
//!
//! What it leaves out, on purpose (engine- and version-specific): activations,
//! CUDA graphs, the allocator's fragmentation and the CUDA context (typically
//! 0.5–2 GiB per GPU). vLLM then fills `gpu_memory_utilization` of the device
//! with KV cache, so the figure to compare with a device is "does this fit in
//! that fraction", not "what nvidia-smi will show".

use crate::AnalysisError;
use crate::flops::ModelShape;
use serde::{Deserialize, Serialize};

/// Bytes per stored element of a precision name as engines spell it
/// (`bfloat16`, `float16`/`half`, `float32`/`float`, `fp8`, `int8`, …).
pub fn dtype_bytes(dtype: &str) -> Result<f64, AnalysisError> {
    let d = dtype.to_ascii_lowercase();
    Ok(match d.as_str() {
        "float32" | "float" | "fp32" | "f32" => 4.0,
        "bfloat16" | "bf16" | "float16" | "fp16" | "half" | "f16" => 2.0,
        s if s.starts_with("fp8") || s.starts_with("float8") || s == "int8" || s == "i8" => 1.0,
        "fp4" | "nvfp4" | "mxfp4" | "int4" => 0.5,
        _ => {
            return Err(AnalysisError::Input(format!(
                "unknown precision `{dtype}` (known: float32, bfloat16, float16, fp8, int8, int4)"
            )));
        }
    })
}

/// Bytes per quantised weight for a quantisation method (vLLM's
/// `--quantization`, or `quantization_config.quant_method` of config.json);
/// `bits` from the config wins when given.
pub fn quantized_bytes(method: &str, bits: Option<u64>) -> Result<f64, AnalysisError> {
    if let Some(bits) = bits.filter(|&b| b > 0) {
        return Ok(bits as f64 / 8.0);
    }
    let m = method.to_ascii_lowercase();
    Ok(match m.as_str() {
        "awq" | "awq_marlin" | "gptq" | "gptq_marlin" | "marlin" | "bitsandbytes" | "gguf"
        | "mxfp4" | "nvfp4" | "modelopt_fp4" => 0.5,
        s if s.starts_with("fp8") || s == "modelopt" || s == "int8" || s == "w8a8" => 1.0,
        _ => {
            return Err(AnalysisError::Input(format!(
                "unknown quantisation `{method}` (known: awq, gptq, bitsandbytes, fp8, int8, mxfp4)"
            )));
        }
    })
}

/// What the estimate is for: precisions and the engine's limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryInputs {
    /// Bytes per weight of the model's dtype (embeddings, norms, and every
    /// weight when not quantised).
    pub weight_bytes: f64,
    /// Bytes per decoder matrix weight when quantised; `None` = not quantised.
    pub quantized_bytes: Option<f64>,
    /// Bytes per KV-cache element.
    pub kv_bytes: f64,
    /// Sequences the engine holds at once (vLLM `max_num_seqs`).
    pub max_num_seqs: u64,
    /// Longest sequence, prompt plus output, in tokens (vLLM `max_model_len`).
    pub max_model_len: u64,
    /// Tensor-parallel ranks the weights and heads are split over (≥ 1).
    pub tensor_parallel: u64,
}

/// Bytes needed, in total and on each tensor-parallel rank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    pub parameters: u64,
    pub weights_bytes: u64,
    /// KV cache of one token, summed over the layers (all ranks).
    pub kv_bytes_per_token: u64,
    /// KV cache for `max_num_seqs × max_model_len` tokens (all ranks).
    pub kv_cache_bytes: u64,
    pub tensor_parallel: u64,
    pub per_rank_weights_bytes: u64,
    pub per_rank_kv_cache_bytes: u64,
    /// Weights plus KV cache on one rank.
    pub per_rank_total_bytes: u64,
}

/// The estimate for `shape` under `inputs`.
///
/// * weights: embedding (and an untied output projection) and norms at
///   `weight_bytes`; every other parameter at `quantized_bytes` when set;
///   split evenly over the ranks (embeddings are vocabulary-parallel in vLLM).
/// * KV cache: `2 (K and V) × layers × kv_heads × head_dim × kv_bytes` per
///   token, × `max_num_seqs × max_model_len` tokens. A rank holds
///   `ceil(kv_heads / tp)` heads: with fewer KV heads than ranks they are
///   replicated, as vLLM does.
pub fn estimate(
    shape: &ModelShape,
    inputs: &MemoryInputs,
) -> Result<MemoryEstimate, AnalysisError> {
    if inputs.tensor_parallel == 0 {
        return Err(AnalysisError::Input(
            "tensor_parallel must be at least 1".into(),
        ));
    }
    for (name, v) in [
        ("weight_bytes", inputs.weight_bytes),
        ("kv_bytes", inputs.kv_bytes),
        ("quantized_bytes", inputs.quantized_bytes.unwrap_or(1.0)),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(AnalysisError::Input(format!("{name} must be > 0, not {v}")));
        }
    }
    let params = shape.parameters();
    let d = shape.hidden_size;
    let lm_head = if shape.tie_word_embeddings {
        0
    } else {
        params.embedding
    };
    // Kept at the model's dtype by every quantisation method llem knows.
    let unquantized = params.embedding + lm_head + shape.num_layers * 2 * d + d;
    let quantized = params.total.saturating_sub(unquantized);
    let weights = unquantized as f64 * inputs.weight_bytes
        + quantized as f64 * inputs.quantized_bytes.unwrap_or(inputs.weight_bytes);
    let weights_bytes = weights.ceil() as u64;

    let tp = inputs.tensor_parallel;
    let per_token_elems = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim;
    let kv_bytes_per_token = (per_token_elems as f64 * inputs.kv_bytes).ceil() as u64;
    let tokens = inputs.max_num_seqs * inputs.max_model_len;
    let kv_cache_bytes = kv_bytes_per_token * tokens;
    let heads_per_rank = shape.num_kv_heads.div_ceil(tp);
    let per_rank_kv = (2 * shape.num_layers * heads_per_rank * shape.head_dim) as f64
        * inputs.kv_bytes
        * tokens as f64;
    let per_rank_weights_bytes = weights_bytes.div_ceil(tp);
    let per_rank_kv_cache_bytes = per_rank_kv.ceil() as u64;
    Ok(MemoryEstimate {
        parameters: params.total,
        weights_bytes,
        kv_bytes_per_token,
        kv_cache_bytes,
        tensor_parallel: tp,
        per_rank_weights_bytes,
        per_rank_kv_cache_bytes,
        per_rank_total_bytes: per_rank_weights_bytes + per_rank_kv_cache_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Qwen3-8B's config.json (the fields that matter).
    fn qwen3_8b() -> ModelShape {
        ModelShape::from_hf_config(&json!({
            "model_type": "qwen3", "hidden_size": 4096, "intermediate_size": 12288,
            "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": false,
            "attention_bias": false
        }))
        .expect("a valid shape")
    }

    #[test]
    fn qwen3_8b_in_bf16_with_256_sequences_of_4096_tokens_on_two_ranks() {
        // By hand: attention 4096·4096 + 2·4096·1024 + 4096·4096 = 41 943 040;
        // MLP 3·4096·12288 = 150 994 944; norms 8192: 192 946 176 per layer,
        // × 36 = 6 946 062 336; + final norm 4096 + embedding and untied head
        // 2·151936·4096 = 1 244 659 712 → 8 190 726 144 parameters (Qwen
        // states 8.2 B), × 2 bytes = 16 381 452 288 bytes.
        // KV per token: 2 · 36 · 8 · 128 · 2 bytes = 147 456 bytes;
        // × 256 · 4096 tokens = 154 618 822 656 bytes. Two ranks: 4 KV heads
        // each, so half: 77 309 411 328; weights 8 190 726 144 each.
        let e = estimate(
            &qwen3_8b(),
            &MemoryInputs {
                weight_bytes: 2.0,
                quantized_bytes: None,
                kv_bytes: 2.0,
                max_num_seqs: 256,
                max_model_len: 4096,
                tensor_parallel: 2,
            },
        )
        .expect("an estimate");
        assert_eq!(e.parameters, 8_190_726_144);
        assert_eq!(e.weights_bytes, 16_381_452_288);
        assert_eq!(e.kv_bytes_per_token, 147_456);
        assert_eq!(e.kv_cache_bytes, 154_618_822_656);
        assert_eq!(e.per_rank_weights_bytes, 8_190_726_144);
        assert_eq!(e.per_rank_kv_cache_bytes, 77_309_411_328);
        assert_eq!(e.per_rank_total_bytes, 85_500_137_472);
    }

    #[test]
    fn quantised_decoder_weights_and_replicated_kv_heads() {
        // AWQ 4-bit: embedding, head and norms stay at 2 bytes:
        // 1 244 659 712 + 36·8192 + 4096 = 1 244 958 720 parameters × 2 =
        // 2 489 917 440; the other 6 945 767 424 × 0.5 = 3 472 883 712.
        // fp8 KV (1 byte) with 16 ranks: 8 KV heads are replicated, one per rank.
        let e = estimate(
            &qwen3_8b(),
            &MemoryInputs {
                weight_bytes: 2.0,
                quantized_bytes: Some(quantized_bytes("awq", None).expect("known")),
                kv_bytes: dtype_bytes("fp8_e4m3").expect("known"),
                max_num_seqs: 1,
                max_model_len: 1000,
                tensor_parallel: 16,
            },
        )
        .expect("an estimate");
        assert_eq!(e.weights_bytes, 2_489_917_440 + 3_472_883_712);
        assert_eq!(e.kv_cache_bytes, 2 * 36 * 8 * 128 * 1000);
        assert_eq!(e.per_rank_kv_cache_bytes, 2 * 36 * 128 * 1000);
    }

    #[test]
    fn precisions_and_bad_inputs() {
        assert_eq!(dtype_bytes("BFloat16").ok(), Some(2.0));
        assert_eq!(dtype_bytes("float32").ok(), Some(4.0));
        assert_eq!(quantized_bytes("gptq", Some(8)).ok(), Some(1.0));
        assert!(dtype_bytes("float128").is_err());
        let mut inputs = MemoryInputs {
            weight_bytes: 2.0,
            quantized_bytes: None,
            kv_bytes: 2.0,
            max_num_seqs: 1,
            max_model_len: 1,
            tensor_parallel: 0,
        };
        assert!(estimate(&qwen3_8b(), &inputs).is_err());
        inputs.tensor_parallel = 1;
        inputs.kv_bytes = f64::NAN;
        assert!(estimate(&qwen3_8b(), &inputs).is_err());
    }
}
