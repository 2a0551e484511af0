//! The accelerator memory a planned backend will need, from the model's
//! config.json and the backend's options (`llem run --dry-run`). The maths is
//! `llem_analysis::memory`; this file finds its inputs, by the option names
//! the shipped backends use:
//!
//! | input | options read (first set wins) | when none is set |
//! |---|---|---|
//! | dtype | `dtype` | config.json `torch_dtype` / `dtype`, else bfloat16 |
//! | quantisation | `quantization` | config.json `quantization_config` |
//! | KV-cache dtype | `kv_cache_dtype` | the dtype |
//! | sequences | `max_num_seqs`, `max_batch_size`, `batch_size` | 256 (vLLM's default) |
//! | sequence length | `max_model_len`, `max_seq_len` | the model's context length |
//! | tensor parallel | `tensor_parallel_size`, `tp_size` | 1 |
//! | usable fraction | `gpu_memory_utilization`, `free_gpu_memory_fraction` | 0.9 (vLLM's default) |

use llem_analysis::flops::ModelShape;
use llem_analysis::memory::{self, MemoryEstimate, MemoryInputs};
use serde::Serialize;
use serde_json::{Map, Value};

/// The estimate with what it assumed, and how it compares with the devices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryReport {
    pub estimate: MemoryEstimate,
    pub dtype: String,
    pub quantization: Option<String>,
    pub kv_cache_dtype: String,
    pub max_num_seqs: u64,
    pub max_model_len: u64,
    /// Which inputs were defaults rather than options or the config.
    pub assumed: Vec<String>,
    /// Share of a device's memory the engine may use.
    pub usable_fraction: f64,
    /// Each GPU's memory in bytes, as its energy source reported it.
    pub devices: Vec<(String, u64)>,
    /// Whether one rank's weights and KV cache fit in the usable share of the
    /// smallest device; `None` without device memory figures.
    pub fits: Option<bool>,
}

fn first<'a>(options: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .find_map(|k| options.get(*k).filter(|v| !v.is_null()))
}

fn first_u64(options: &Map<String, Value>, keys: &[&str]) -> Option<u64> {
    first(options, keys).and_then(Value::as_u64)
}

fn first_str(options: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    first(options, keys)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && !matches!(*s, "auto" | "none"))
        .map(str::to_owned)
}

/// The estimate for a backend with `options` serving the model of `config`.
/// `devices`: (name, bytes) of the GPUs the engine will use.
pub fn report(
    config: &Value,
    options: &Map<String, Value>,
    devices: Vec<(String, u64)>,
) -> Result<MemoryReport, String> {
    let shape = ModelShape::from_hf_config(config).map_err(|e| e.to_string())?;
    let mut assumed = Vec::new();
    let config_dtype = ["torch_dtype", "dtype"]
        .iter()
        .find_map(|k| config.get(*k).and_then(Value::as_str))
        .map(str::to_owned);
    let dtype = first_str(options, &["dtype"])
        .or(config_dtype)
        .unwrap_or_else(|| {
            assumed.push("dtype bfloat16".into());
            "bfloat16".into()
        });
    let config_quant = config.get("quantization_config");
    let quantization = first_str(options, &["quantization"]).or_else(|| {
        config_quant
            .and_then(|q| q.get("quant_method"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let bits = config_quant
        .and_then(|q| q.get("bits").or_else(|| q.get("w_bit")))
        .and_then(Value::as_u64);
    let kv_cache_dtype = first_str(options, &["kv_cache_dtype"]).unwrap_or_else(|| dtype.clone());
    let max_num_seqs = first_u64(options, &["max_num_seqs", "max_batch_size", "batch_size"])
        .unwrap_or_else(|| {
            assumed.push("256 sequences (vLLM's default max_num_seqs)".into());
            256
        });
    let max_model_len = match first_u64(options, &["max_model_len", "max_seq_len"]) {
        Some(n) => n,
        None => crate::model::context_length(config).ok_or(
            "neither the backend's max_model_len nor the model's config gives a context length",
        )?,
    };
    let tensor_parallel = first_u64(options, &["tensor_parallel_size", "tp_size"]).unwrap_or(1);
    let usable_fraction = first(
        options,
        &["gpu_memory_utilization", "free_gpu_memory_fraction"],
    )
    .and_then(Value::as_f64)
    .unwrap_or(0.9);
    let inputs = MemoryInputs {
        weight_bytes: memory::dtype_bytes(&dtype).map_err(|e| e.to_string())?,
        quantized_bytes: quantization
            .as_deref()
            .map(|q| memory::quantized_bytes(q, bits))
            .transpose()
            .map_err(|e| e.to_string())?,
        kv_bytes: memory::dtype_bytes(&kv_cache_dtype).map_err(|e| e.to_string())?,
        max_num_seqs,
        max_model_len,
        tensor_parallel,
    };
    let estimate = memory::estimate(&shape, &inputs).map_err(|e| e.to_string())?;
    let fits = devices
        .iter()
        .map(|(_, bytes)| *bytes)
        .min()
        .map(|smallest| estimate.per_rank_total_bytes as f64 <= smallest as f64 * usable_fraction);
    Ok(MemoryReport {
        estimate,
        dtype,
        quantization,
        kv_cache_dtype,
        max_num_seqs,
        max_model_len,
        assumed,
        usable_fraction,
        devices,
        fits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tiny_llama() -> Value {
        json!({
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
            "vocab_size": 500, "max_position_embeddings": 512, "tie_word_embeddings": false,
            "torch_dtype": "float32"
        })
    }

    #[test]
    fn options_and_config_become_the_inputs() {
        let options = match json!({"batch_size": 8}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let r = report(&tiny_llama(), &options, vec![("gpu0".into(), 1 << 30)]).expect("report");
        assert_eq!(r.dtype, "float32");
        assert_eq!((r.max_num_seqs, r.max_model_len), (8, 512));
        // Per layer 4·64·64 + 3·64·128 + 128 = 41 088; × 2 + 64 + 2·500·64 = 146 240
        // parameters × 4 bytes; KV 2·2·4·16·4 = 1 024 bytes a token × 8 · 512.
        assert_eq!(r.estimate.parameters, 146_240);
        assert_eq!(r.estimate.weights_bytes, 584_960);
        assert_eq!(r.estimate.kv_cache_bytes, 1_024 * 8 * 512);
        assert_eq!(r.fits, Some(true));
        assert!(r.assumed.is_empty(), "{:?}", r.assumed);
    }

    #[test]
    fn too_big_for_the_device_does_not_fit() {
        let options = match json!({"max_num_seqs": 1_000_000, "gpu_memory_utilization": 0.5}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let r = report(&tiny_llama(), &options, vec![("gpu0".into(), 1 << 30)]).expect("report");
        assert_eq!(r.fits, Some(false));
        let none = report(&tiny_llama(), &options, Vec::new()).expect("report");
        assert_eq!(none.fits, None);
    }
}
