//! `cargo xtask run [-- <llem args>]`: the README's "run the main job".
//!
//! Builds llem and its plugins in release, sets up the Python environment
//! (`tests/python/setup-venv.sh`: CPU torch + transformers from PyPI), creates a
//! tiny randomly initialised Llama with its own tokenizer (nothing can be
//! downloaded here), then runs a measured `llem run` on the embedded default:
//! the PyTorch backend (offline worker) generating for a small prompt set,
//! energy from every source that works on this machine (the labelled CPU
//! estimate at worst). Extra arguments go to `llem run` after these.

use crate::build::{self, Profile};
use crate::cargo;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, ExitCode};

/// Prompts of the demo; the dataset plugin reads them like any JSON Lines file.
const DEMO_PROMPTS: &[&str] = &[
    "Explain what a joule is.",
    "Write a short poem about the sea.",
    "Why is the sky blue?",
    "Summarise: batching requests keeps the accelerator busy.",
    "List three prime numbers.",
    "What is the capital of France?",
    "Describe a robot who wants to paint.",
    "How does a transformer predict the next token?",
];

fn run_checked(command: &mut Command, what: &str) -> Result<()> {
    match cargo::status(command)? {
        Some(0) => Ok(()),
        other => bail!("{what} failed ({other:?})"),
    }
}

fn prepare_demo(root: &Path, demo: &Path) -> Result<()> {
    run_checked(
        Command::new("bash").arg(root.join("tests/python/setup-venv.sh")),
        "setting up the Python environment (tests/python/setup-venv.sh)",
    )?;
    let model = demo.join("tiny-llama");
    if !model.join("tokenizer.json").is_file() {
        run_checked(
            Command::new(root.join(".venv/bin/python"))
                .arg(root.join("tests/python/make_tiny_model.py"))
                .arg(&model),
            "creating the tiny model (tests/python/make_tiny_model.py)",
        )?;
    }
    let prompts: String = DEMO_PROMPTS
        .iter()
        .map(|p| format!("{}\n", serde_json_string(p)))
        .collect();
    std::fs::write(demo.join("prompts.jsonl"), prompts).context("writing the demo prompts")?;
    Ok(())
}

/// `{"prompt": "<text>"}` with the text JSON-escaped (quotes and backslashes only occur).
fn serde_json_string(text: &str) -> String {
    format!(
        "{{\"prompt\": \"{}\"}}",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

pub fn cmd(args: &[String]) -> Result<ExitCode> {
    let llem_path = build::build(Profile::Release)?;
    let root = cargo::root();
    let demo = root.join("target/llem-demo");
    std::fs::create_dir_all(&demo).with_context(|| format!("creating {}", demo.display()))?;
    prepare_demo(root, &demo)?;
    let python = root.join(".venv/bin/python");
    let mut llem = Command::new(&llem_path);
    llem.arg("run")
        .args(["--name", "demo", "--plugins", "pytorch,jsonl"])
        .arg("--set")
        .arg(format!(
            "experiment.model={:?}",
            demo.join("tiny-llama").display().to_string()
        ))
        .arg("--set")
        .arg(format!("pytorch.python={:?}", python.display().to_string()))
        .args(["--set", "pytorch.batch_size=4"])
        .arg("--set")
        .arg(format!(
            "jsonl.file={:?}",
            demo.join("prompts.jsonl").display().to_string()
        ))
        .args(["--set", "jsonl.max_output_tokens=32"])
        .arg("--output")
        .arg(root.join("runs"))
        .args(crate::passthrough(args));
    Ok(match cargo::status(&mut llem)? {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => {
            eprintln!("[xtask] llem was killed by a signal");
            ExitCode::FAILURE
        }
    })
}
