//! Peak dense BF16 tensor throughput by GPU, for MFU.
//!
//! Figures are the vendors' datasheet numbers **without** structured sparsity
//! (NVIDIA's datasheets print the sparse figure with an asterisk; the dense one
//! is half of it). Matching is on the name NVML / amd-smi report, lower-cased,
//! most specific pattern first.

use serde::{Deserialize, Serialize};

/// One GPU's peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuPeak {
    /// The table's name for it (e.g. `H100 SXM`).
    pub model: String,
    /// Dense BF16 tensor-core peak, TFLOP/s (10^12 FLOP/s).
    pub bf16_dense_tflops: f64,
    /// Where the figure comes from.
    pub source: String,
}

/// (patterns that must all appear, model, dense BF16 TFLOP/s, source).
/// Order matters: the first row whose patterns all match wins.
const TABLE: &[(&[&str], &str, f64, &str)] = &[
    // NVIDIA H100 datasheet: SXM 1,979 / PCIe 1,513 / NVL 1,671 TFLOPS BF16 with sparsity.
    (
        &["gh200"],
        "GH200",
        989.4,
        "NVIDIA GH200 datasheet (same Hopper GPU as H100 SXM)",
    ),
    (
        &["h100", "pcie"],
        "H100 PCIe",
        756.0,
        "NVIDIA H100 datasheet: 1,513 TFLOPS BF16 sparse",
    ),
    (
        &["h100", "nvl"],
        "H100 NVL",
        835.5,
        "NVIDIA H100 datasheet: 1,671 TFLOPS BF16 sparse",
    ),
    (
        &["h100"],
        "H100 SXM",
        989.4,
        "NVIDIA H100 datasheet: 1,979 TFLOPS BF16 sparse",
    ),
    // NVIDIA H200 datasheet: SXM 1,979 / NVL 1,671 TFLOPS BF16 with sparsity.
    (
        &["h200", "nvl"],
        "H200 NVL",
        835.5,
        "NVIDIA H200 datasheet: 1,671 TFLOPS BF16 sparse",
    ),
    (
        &["h200"],
        "H200 SXM",
        989.4,
        "NVIDIA H200 datasheet: 1,979 TFLOPS BF16 sparse",
    ),
    // NVIDIA Blackwell: GB200 NVL72 5 PFLOPS BF16 sparse per GPU; HGX B200 4.5 PFLOPS.
    (
        &["gb200"],
        "GB200",
        2500.0,
        "NVIDIA GB200 NVL72 datasheet: 5 PFLOPS BF16 sparse per GPU",
    ),
    (
        &["b200"],
        "B200",
        2250.0,
        "NVIDIA HGX B200 datasheet: 4.5 PFLOPS BF16 sparse per GPU",
    ),
    // NVIDIA A100 datasheet: 312 TFLOPS BF16 dense (624 sparse), SXM and PCIe alike.
    (
        &["a100"],
        "A100",
        312.0,
        "NVIDIA A100 datasheet: 312 TFLOPS BF16 dense",
    ),
    // NVIDIA L40S / L40 datasheets: 362.05 | 733* and 181.05 | 362.1* TFLOPS BF16.
    (
        &["l40s"],
        "L40S",
        362.05,
        "NVIDIA L40S datasheet: 362.05 TFLOPS BF16 dense",
    ),
    (
        &["l40"],
        "L40",
        181.05,
        "NVIDIA L40 datasheet: 181.05 TFLOPS BF16 dense",
    ),
    // NVIDIA L4 datasheet: 242 TFLOPS BF16 sparse; A10 datasheet: 125 dense (250 sparse).
    (
        &["l4"],
        "L4",
        121.0,
        "NVIDIA L4 datasheet: 242 TFLOPS BF16 sparse",
    ),
    (
        &["a10"],
        "A10",
        125.0,
        "NVIDIA A10 datasheet: 125 TFLOPS BF16 dense",
    ),
    // AMD Instinct datasheets: MI300X / MI325X 1,307.4, MI300A 980.6, MI250X 383 TFLOPS BF16 dense.
    (
        &["mi325x"],
        "MI325X",
        1307.4,
        "AMD Instinct MI325X datasheet: 1,307.4 TFLOPS BF16 dense",
    ),
    (
        &["mi300x"],
        "MI300X",
        1307.4,
        "AMD Instinct MI300X datasheet: 1,307.4 TFLOPS BF16 dense",
    ),
    (
        &["mi300a"],
        "MI300A",
        980.6,
        "AMD Instinct MI300A datasheet: 980.6 TFLOPS BF16 dense",
    ),
    (
        &["mi250x"],
        "MI250X",
        383.0,
        "AMD Instinct MI250X datasheet: 383 TFLOPS BF16 dense",
    ),
];

/// The peak for a GPU name as the driver reports it (`NVIDIA H100 80GB
/// HBM3`, `NVIDIA A100-SXM4-80GB`, `AMD Instinct MI300X`…); `None` when the
/// table does not know it (MFU is then left out, never guessed).
pub fn peak_for(gpu_name: &str) -> Option<GpuPeak> {
    let name = gpu_name.to_ascii_lowercase();
    // "L4" and "A10" are prefixes of other names: compare them as whole words.
    let words: Vec<&str> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |p: &str| {
        if matches!(p, "l4" | "l40" | "a10") {
            words.contains(&p)
        } else {
            name.contains(p)
        }
    };
    TABLE
        .iter()
        .find(|(patterns, ..)| patterns.iter().all(|p| has(p)))
        .map(|&(_, model, tflops, source)| GpuPeak {
            model: model.to_owned(),
            bf16_dense_tflops: tflops,
            source: source.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> Option<String> {
        peak_for(name).map(|p| p.model)
    }

    #[test]
    fn driver_names_match_the_right_row() {
        assert_eq!(model("NVIDIA H100 80GB HBM3").as_deref(), Some("H100 SXM"));
        assert_eq!(model("NVIDIA H100 PCIe").as_deref(), Some("H100 PCIe"));
        assert_eq!(model("NVIDIA H100 NVL").as_deref(), Some("H100 NVL"));
        assert_eq!(model("NVIDIA H200").as_deref(), Some("H200 SXM"));
        assert_eq!(model("NVIDIA H200 NVL").as_deref(), Some("H200 NVL"));
        assert_eq!(model("NVIDIA GH200 480GB").as_deref(), Some("GH200"));
        assert_eq!(model("NVIDIA B200").as_deref(), Some("B200"));
        assert_eq!(model("NVIDIA GB200").as_deref(), Some("GB200"));
        assert_eq!(model("NVIDIA A100-SXM4-80GB").as_deref(), Some("A100"));
        assert_eq!(model("NVIDIA A100 80GB PCIe").as_deref(), Some("A100"));
        assert_eq!(model("NVIDIA L40S").as_deref(), Some("L40S"));
        assert_eq!(model("NVIDIA L40").as_deref(), Some("L40"));
        assert_eq!(model("NVIDIA L4").as_deref(), Some("L4"));
        assert_eq!(model("NVIDIA A10").as_deref(), Some("A10"));
        assert_eq!(model("AMD Instinct MI300X").as_deref(), Some("MI300X"));
        assert_eq!(model("NVIDIA GeForce RTX 4090"), None);
        assert_eq!(model("NVIDIA A10G"), None);
        // 1,979 sparse / 2 = 989.5 is the rounded datasheet figure; NVIDIA's dense is 989.4.
        assert_eq!(
            peak_for("NVIDIA H100 80GB HBM3").map(|p| p.bf16_dense_tflops),
            Some(989.4)
        );
    }
}
