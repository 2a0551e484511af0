//! `llem config default`: the rendered manifest documents every key and resolves.

use llem_manifest::render_default;

use crate::common::{plan, plugins};

/// Uncomment each plugin block: its `# [plugins.…]` header and the `# key = …` lines under it.
fn uncomment_plugins(text: &str) -> String {
    let mut in_block = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("# [plugins.") {
            in_block = true;
        } else if line.trim().is_empty() {
            in_block = false;
        }
        let line = match line.strip_prefix("# ") {
            Some(rest) if in_block => rest,
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn default_manifest_documents_every_key() {
    let text = render_default(&plugins());
    for needle in [
        "[experiment]",
        "name = \"llem-run\"",
        "# model = \"Qwen/Qwen3-8B\"",
        "duration_s = 10.0",
        "sample_interval_ms = 100",
        "cycles = 1",
        "#   memory_mib = 256",
        "#   call_timeout_ms = 5000",
        "# energy-rapl 0.1.0 (energy): fake energy-rapl",
        "# [plugins.rapl]",
        "# domains = [\"package\", \"dram\"]  # RAPL domains",
        "# served_model_name = \"\"  # REQUIRED (string): Name the server answers to",
        "# # quantization = \"\"  # optional, unset by default: Quantization method",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn default_manifest_resolves_as_is_and_with_plugins_uncommented() {
    let text = render_default(&plugins());
    let as_is = plan(&text);
    assert!(as_is.plugins.is_empty());
    assert_eq!(as_is.experiment.name, "llem-run");

    let uncommented = uncomment_plugins(&text);
    let full = plan(&uncommented);
    let names: Vec<&str> = full.plugins.iter().map(|p| p.full_name.as_str()).collect();
    assert_eq!(
        names,
        ["energy-nvml", "energy-rapl", "backend-vllm"],
        "{uncommented}"
    );
    assert_eq!(full.plugins[2].config["max_num_seqs"], 256);
}
