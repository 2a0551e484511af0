//! The dataset plugins (`dataset-synthetic`, `dataset-sharegpt`,
//! `dataset-alpaca`), as WASM components loaded through the kernel, sandboxed
//! with a read-only grant of the test's directory.
//!
//! No downloads: each test trains a small byte-level BPE `tokenizer.json` on the
//! spot with the `tokenizers` crate (natively) and re-measures every prompt with
//! it, counting as the plugins do (`add_special_tokens = false`).

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::Sandbox;
use llem_integration_tests::{loader, wasm_artifact};
use llem_sdk::{LoadRequest, PluginInfo, Prompt, PromptBody};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

const WORDS: &[&str] = &[
    "the",
    "energy",
    "of",
    "a",
    "model",
    "is",
    "measured",
    "in",
    "joules",
    "per",
    "token",
    "and",
    "latency",
    "throughput",
    "batch",
    "prompt",
    "output",
    "input",
    "server",
    "engine",
    "request",
    "power",
    "watt",
    "counter",
    "sample",
    "window",
    "GPU",
    "CPU",
    "memory",
    "cache",
    "prefix",
    "decode",
    "prefill",
    "attention",
    "kernel",
    "plugin",
    "sandbox",
    "tokenizer",
    "vocabulary",
    "random",
    "seed",
    "length",
    "exact",
    "uniform",
    "normal",
    "fixed",
    "mean",
    "deviation",
    "shuffle",
    "filter",
    "dataset",
    "conversation",
    "reply",
    "instruction",
    "answer",
    "question",
    "why",
    "how",
    "what",
    "when",
    "where",
    "which",
    "fast",
    "slow",
    "large",
    "small",
    "café",
    "naïve",
    "über",
    "日本語",
    "🙂",
    "x86_64",
    "H100",
    "0.5",
    "42",
    "1024",
    "-",
    ",",
    ".",
    "?",
    "!",
];

/// A directory with a freshly trained `tokenizer.json`, and that tokenizer.
struct Fixture {
    dir: tempfile::TempDir,
    tokenizer_path: PathBuf,
    tokenizer: Tokenizer,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // A few hundred words of text, deterministic.
        let mut state = 12345u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let mut corpus = String::new();
        for _ in 0..300 {
            let n = 3 + next() % 12;
            let line: Vec<&str> = (0..n).map(|_| WORDS[next() % WORDS.len()]).collect();
            corpus.push_str(&line.join(" "));
            corpus.push('\n');
        }
        let corpus_path = dir.path().join("corpus.txt");
        std::fs::write(&corpus_path, corpus).unwrap();

        let special = vec![
            AddedToken::from("<|endoftext|>", true),
            AddedToken::from("<|im_start|>", true),
        ];
        let mut trainer: TrainerWrapper = BpeTrainer::builder()
            .vocab_size(600)
            .min_frequency(1)
            .show_progress(false)
            .special_tokens(special)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        let mut tokenizer = Tokenizer::new(BPE::default());
        tokenizer.with_pre_tokenizer(Some(ByteLevel::default()));
        tokenizer.with_decoder(Some(ByteLevel::default()));
        tokenizer
            .train_from_files(&mut trainer, vec![corpus_path.display().to_string()])
            .unwrap();
        let tokenizer_path = dir.path().join("tokenizer.json");
        tokenizer.save(&tokenizer_path, false).unwrap();
        let tokenizer = Tokenizer::from_file(&tokenizer_path).unwrap();
        assert!(tokenizer.get_vocab_size(false) > 300, "a real vocabulary");
        Fixture {
            dir,
            tokenizer_path,
            tokenizer,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// Tokens of `text` alone, as the plugins count them.
    fn count(&self, text: &str) -> u32 {
        self.tokenizer.encode(text, false).unwrap().len() as u32
    }

    fn sandbox(&self) -> Sandbox {
        Sandbox {
            read_dirs: vec![self.dir.path().to_owned()],
            // Debug WASM builds tokenize slowly; the deadline is not under test here.
            call_timeout: Duration::from_secs(120),
            ..Sandbox::default()
        }
    }
}

fn request(seed: u64) -> LoadRequest {
    LoadRequest {
        model: "tiny".into(),
        tokenizer_path: None,
        seed,
        limit: None,
    }
}

/// The table the kernel hands a plugin: every option present, defaults
/// filled, `overrides` on top (each naming a declared option).
fn config(info: &PluginInfo, overrides: Value) -> Map<String, Value> {
    let Value::Object(overrides) = overrides else {
        unreachable!("overrides are a table")
    };
    for key in overrides.keys() {
        assert!(
            info.options.iter().any(|o| &o.name == key),
            "{} has no option `{key}`",
            info.name
        );
    }
    info.options
        .iter()
        .map(|o| {
            let value = overrides
                .get(&o.name)
                .or(o.default.as_ref())
                .unwrap_or_else(|| panic!("required option `{}` not given", o.name))
                .clone();
            (o.name.clone(), value)
        })
        .collect()
}

/// The plugin built for wasm32-wasip2, loaded once per test process: loading
/// a debug build of a component that carries a tokenizer takes seconds even
/// from the compiled-component cache.
fn plugin(name: &'static str) -> &'static llem::Plugin {
    static PLUGINS: OnceLock<Mutex<HashMap<&'static str, &'static llem::Plugin>>> = OnceLock::new();
    let mut plugins = PLUGINS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    plugins
        .entry(name)
        .or_insert_with(|| Box::leak(Box::new(loader().load(&wasm_artifact(name)).unwrap())))
}

/// Open `plugin` with `overrides` and load with `request`; the error as text.
fn run(
    fixture: &Fixture,
    plugin_name: &'static str,
    overrides: Value,
    request: &LoadRequest,
) -> Result<Vec<Prompt>, String> {
    let plugin = plugin(plugin_name);
    let cfg = config(plugin.info(), overrides);
    let mut dataset = plugin
        .open_dataset(&cfg, &fixture.sandbox())
        .map_err(|e| e.to_string())?;
    dataset.load(request).map_err(|e| e.to_string())
}

fn text(prompt: &Prompt) -> &str {
    match &prompt.body {
        PromptBody::Text(text) => text,
        other => panic!("expected a text prompt, got {other:?}"),
    }
}

fn mean(values: &[u32]) -> f64 {
    values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64
}

// ------------------------------------------------------------- synthetic

fn synthetic(fixture: &Fixture, overrides: Value, seed: u64) -> Result<Vec<Prompt>, String> {
    let mut overrides = overrides;
    overrides
        .as_object_mut()
        .unwrap()
        .entry("tokenizer")
        .or_insert_with(|| json!(fixture.tokenizer_path.display().to_string()));
    run(fixture, "dataset-synthetic", overrides, &request(seed))
}

/// Every prompt's text re-measures, natively, to exactly its `input_tokens`.
fn assert_exact(fixture: &Fixture, prompts: &[Prompt]) {
    for prompt in prompts {
        let counted = fixture.count(text(prompt));
        assert_eq!(
            Some(counted),
            prompt.input_tokens,
            "prompt {} re-measures to {counted} tokens: {:?}",
            prompt.id,
            text(prompt)
        );
    }
}

#[test]
fn synthetic_fixed_lengths_are_exact() {
    let fixture = Fixture::new();
    let prompts = synthetic(
        &fixture,
        json!({
            "num_prompts": 20,
            "input_tokens": {"dist": "fixed", "value": 64},
            "output_tokens": {"dist": "fixed", "value": 32},
        }),
        1,
    )
    .unwrap();
    assert_eq!(prompts.len(), 20);
    assert_exact(&fixture, &prompts);
    assert!(prompts.iter().all(|p| p.input_tokens == Some(64)));
    assert!(prompts.iter().all(|p| p.max_output_tokens == Some(32)));
    let ids: Vec<&str> = prompts.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids[..3], ["0", "1", "2"]);
    // Random vocabulary tokens: no special token's text ever appears.
    for prompt in &prompts {
        assert!(!text(prompt).contains("<|"), "{:?}", text(prompt));
    }
    // Different prompts, not one repeated.
    assert_ne!(text(&prompts[0]), text(&prompts[1]));
}

#[test]
fn synthetic_uniform_and_normal_distributions_are_respected() {
    let fixture = Fixture::new();
    let prompts = synthetic(
        &fixture,
        json!({
            "num_prompts": 200,
            "input_tokens": {"dist": "uniform", "min": 5, "max": 40},
            "output_tokens": {"dist": "normal", "mean": 100.0, "std": 20.0, "min": 60, "max": 150},
        }),
        7,
    )
    .unwrap();
    assert_eq!(prompts.len(), 200);
    assert_exact(&fixture, &prompts);
    let inputs: Vec<u32> = prompts.iter().map(|p| p.input_tokens.unwrap()).collect();
    let outputs: Vec<u32> = prompts
        .iter()
        .map(|p| p.max_output_tokens.unwrap())
        .collect();
    assert!(inputs.iter().all(|n| (5..=40).contains(n)), "{inputs:?}");
    // Uniform over 5..=40: mean 22.5, sd of the mean ≈ 10.4 / √200 ≈ 0.74.
    assert!((mean(&inputs) - 22.5).abs() < 3.0, "{}", mean(&inputs));
    // Spread over the range, not stuck at one value.
    assert!(*inputs.iter().min().unwrap() <= 8 && *inputs.iter().max().unwrap() >= 37);
    assert!(
        outputs.iter().all(|n| (60..=150).contains(n)),
        "{outputs:?}"
    );
    // Normal(100, 20) truncated to [60, 150]: mean ≈ 100.4, sd of the mean ≈ 1.3.
    let m = mean(&outputs);
    assert!((m - 100.0).abs() < 5.0, "{m}");
    let sd = (outputs
        .iter()
        .map(|&v| (f64::from(v) - m).powi(2))
        .sum::<f64>()
        / outputs.len() as f64)
        .sqrt();
    assert!((14.0..26.0).contains(&sd), "{sd}");
}

#[test]
fn synthetic_is_deterministic_per_seed() {
    let fixture = Fixture::new();
    let options = json!({
        "num_prompts": 10,
        "input_tokens": {"dist": "uniform", "min": 10, "max": 30},
        "output_tokens": {"dist": "uniform", "min": 1, "max": 500},
    });
    let a = synthetic(&fixture, options.clone(), 3).unwrap();
    let b = synthetic(&fixture, options.clone(), 3).unwrap();
    assert_eq!(a, b, "same seed, same prompts");
    let c = synthetic(&fixture, options.clone(), 4).unwrap();
    assert_ne!(a, c, "another experiment seed, other prompts");
    let mut offset = options;
    offset["seed"] = json!(1);
    let d = synthetic(&fixture, offset, 3).unwrap();
    assert_ne!(a, d, "the plugin's seed offset changes them too");
    assert_eq!(d, c, "the offset adds to the experiment's seed");
}

#[test]
fn synthetic_shared_prefix_counts_towards_the_length() {
    let fixture = Fixture::new();
    let prefix = "You are a careful assistant. Answer the question about energy:";
    let prompts = synthetic(
        &fixture,
        json!({
            "num_prompts": 10,
            "prefix": prefix,
            "input_tokens": {"dist": "uniform", "min": 30, "max": 60},
        }),
        5,
    )
    .unwrap();
    assert_exact(&fixture, &prompts);
    assert!(prompts.iter().all(|p| text(p).starts_with(prefix)));

    let prompts = synthetic(
        &fixture,
        json!({
            "num_prompts": 10,
            "prefix_tokens": 16,
            "input_tokens": {"dist": "fixed", "value": 40},
        }),
        5,
    )
    .unwrap();
    assert_exact(&fixture, &prompts);
    // One random prefix of 16 tokens shared by every prompt: the prompts'
    // common start is about that long (its last word may merge with the rest).
    let common = prompts.iter().skip(1).fold(text(&prompts[0]), |common, p| {
        let n = common
            .char_indices()
            .zip(text(p).chars())
            .take_while(|((_, a), b)| a == b)
            .count();
        &common[..common
            .char_indices()
            .nth(n)
            .map_or(common.len(), |(i, _)| i)]
    });
    let shared = fixture.count(common);
    assert!(
        (12..30).contains(&shared),
        "{shared} shared tokens: {common:?}"
    );

    let err = synthetic(
        &fixture,
        json!({"prefix": prefix, "input_tokens": {"dist": "fixed", "value": 3}}),
        5,
    )
    .unwrap_err();
    assert!(err.contains("prefix alone is"), "{err}");
}

#[test]
fn synthetic_uses_the_models_tokenizer_and_names_both_when_missing() {
    let fixture = Fixture::new();
    let plugin = plugin("dataset-synthetic");
    let cfg = config(
        plugin.info(),
        json!({"num_prompts": 3, "input_tokens": {"dist": "fixed", "value": 12}}),
    );
    assert_eq!(cfg["tokenizer"], Value::Null, "unset by default");
    let mut dataset = plugin.open_dataset(&cfg, &fixture.sandbox()).unwrap();
    // No tokenizer option: the model's, from the load request.
    let prompts = dataset
        .load(&LoadRequest {
            tokenizer_path: Some(fixture.tokenizer_path.display().to_string()),
            ..request(1)
        })
        .unwrap();
    assert_exact(&fixture, &prompts);
    // Neither: an error naming both.
    let err = dataset.load(&request(1)).unwrap_err().to_string();
    assert!(err.contains("`tokenizer`"), "{err}");
    assert!(err.contains("model"), "{err}");
}

#[test]
fn synthetic_rejects_bad_distributions_naming_the_key() {
    let fixture = Fixture::new();
    let cases = [
        (
            json!({"input_tokens": {"dist": "normal", "mean": 10}}),
            "`input_tokens.std`",
        ),
        (
            json!({"output_tokens": {"dist": "fixed", "value": 5, "mean": 3}}),
            "`output_tokens.mean`: unknown key",
        ),
        (
            json!({"input_tokens": {"dist": "poisson", "value": 5}}),
            "`input_tokens.dist`",
        ),
        (
            json!({"input_tokens": {"dist": "uniform", "min": 50, "max": 10}}),
            "`input_tokens.max`",
        ),
        (
            json!({"output_tokens": {"dist": "fixed", "value": 0}}),
            "`output_tokens.value`",
        ),
    ];
    for (overrides, expected) in cases {
        let err = synthetic(&fixture, overrides.clone(), 1).unwrap_err();
        assert!(err.contains(expected), "{overrides}: {err}");
    }
    let err = synthetic(
        &fixture,
        json!({"tokenizer": fixture.path("missing.json").display().to_string()}),
        1,
    )
    .unwrap_err();
    assert!(err.contains("cannot read tokenizer"), "{err}");
    let not_json = fixture.write("bad-tokenizer.json", "{\"version\": ");
    let err = synthetic(&fixture, json!({"tokenizer": not_json}), 1).unwrap_err();
    assert!(err.contains("not a Hugging Face tokenizer.json"), "{err}");
}

// ------------------------------------------------------------- sharegpt

fn sharegpt_fixture(fixture: &Fixture) -> String {
    let conversations = json!([
        {"id": "short", "conversations": [
            {"from": "human", "value": "why"},
            {"from": "gpt", "value": "the energy of a model is measured in joules per token"}]},
        {"id": "a", "conversations": [
            {"from": "human", "value": "how is the energy of a model measured per token?"},
            {"from": "gpt", "value": "the energy is measured in joules per token and the latency per request"},
            {"from": "human", "value": "and the power?"},
            {"from": "gpt", "value": "power is measured in watt by a counter"}]},
        {"id": "sys", "conversations": [
            {"from": "system", "value": "answer in one line"},
            {"from": "human", "value": "what is the prefill of a prompt in the engine?"},
            {"from": "gpt", "value": "the prefill is the attention over the input prompt tokens"}]},
        {"id": 7, "conversations": [
            {"from": "human", "value": "what is a cache in the engine memory?"},
            {"from": "chatgpt", "value": "a small fast memory"}]},
        {"id": "unanswered", "conversations": [
            {"from": "human", "value": "is anyone there to answer the question?"}]},
        {"id": "empty", "conversations": []},
        {"id": "long", "conversations": [
            {"from": "human", "value": "the energy of a model ".repeat(60)},
            {"from": "gpt", "value": "the reply is long too"}]},
        {"id": "b", "conversations": [
            {"from": "human", "value": "which tokenizer and vocabulary does the random dataset use?"},
            {"from": "gpt", "value": "the model tokenizer with its vocabulary and a seed"}]},
    ]);
    fixture.write("sharegpt.json", &conversations.to_string())
}

fn sharegpt(fixture: &Fixture, overrides: Value, seed: u64) -> Result<Vec<Prompt>, String> {
    run(fixture, "dataset-sharegpt", overrides, &request(seed))
}

#[test]
fn sharegpt_first_turns_with_reply_lengths_and_vllm_filters() {
    let fixture = Fixture::new();
    let file = sharegpt_fixture(&fixture);
    let tokenizer = fixture.tokenizer_path.display().to_string();
    let prompts = sharegpt(
        &fixture,
        json!({"file": file, "tokenizer": tokenizer, "shuffle": false, "max_input_tokens": 100}),
        1,
    )
    .unwrap();
    let ids: Vec<&str> = prompts.iter().map(|p| p.id.as_str()).collect();
    // `short` is under 4 tokens and `long` over max_input_tokens; `unanswered`
    // and `empty` have no answered user turn.
    assert_eq!(ids, ["a", "sys", "7", "b"]);
    assert_eq!(
        text(&prompts[0]),
        "how is the energy of a model measured per token?"
    );
    assert_eq!(
        text(&prompts[1]),
        "what is the prefill of a prompt in the engine?"
    );
    assert_exact(&fixture, &prompts);
    assert_eq!(
        prompts[0].max_output_tokens,
        Some(
            fixture.count("the energy is measured in joules per token and the latency per request")
        )
    );
    assert_eq!(
        prompts[2].max_output_tokens,
        Some(fixture.count("a small fast memory"))
    );
    assert!(fixture.count("why") < 4 && fixture.count(&"the energy of a model ".repeat(60)) > 100);

    // Filters off: `short` and `long` come back.
    let all = sharegpt(
        &fixture,
        json!({"file": file, "tokenizer": tokenizer, "shuffle": false,
               "min_input_tokens": 0, "max_input_tokens": 0, "min_output_tokens": 0, "max_total_tokens": 0}),
        1,
    )
    .unwrap();
    assert_eq!(all.len(), 6);
    // An output-length filter.
    let capped = sharegpt(
        &fixture,
        json!({"file": file, "tokenizer": tokenizer, "shuffle": false, "max_output_tokens_filter": 8}),
        1,
    )
    .unwrap();
    assert!(capped.iter().all(|p| p.max_output_tokens.unwrap() <= 8));
    assert!(capped.iter().any(|p| p.id == "7"));
    assert!(!capped.iter().any(|p| p.id == "a"));
    // Fixed output length.
    let fixed = sharegpt(
        &fixture,
        json!({"file": file, "tokenizer": tokenizer, "output_len": "fixed", "max_output_tokens": 99}),
        1,
    )
    .unwrap();
    assert!(fixed.iter().all(|p| p.max_output_tokens == Some(99)));
}

#[test]
fn sharegpt_all_turns_become_chats() {
    let fixture = Fixture::new();
    let file = sharegpt_fixture(&fixture);
    let prompts = sharegpt(
        &fixture,
        json!({"file": file, "turns": "all", "shuffle": false,
               "tokenizer": fixture.tokenizer_path.display().to_string()}),
        1,
    )
    .unwrap();
    let a = prompts.iter().find(|p| p.id == "a").unwrap();
    let PromptBody::Chat(messages) = &a.body else {
        panic!("expected a chat, got {:?}", a.body)
    };
    let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(messages[2].content, "and the power?");
    assert_eq!(
        a.max_output_tokens,
        Some(fixture.count("power is measured in watt by a counter"))
    );
    assert_eq!(
        a.input_tokens, None,
        "a chat's length depends on the template"
    );
    let sys = prompts.iter().find(|p| p.id == "sys").unwrap();
    let PromptBody::Chat(messages) = &sys.body else {
        panic!("expected a chat")
    };
    assert_eq!(messages[0].role, "system");
}

#[test]
fn sharegpt_without_tokenizer_shuffles_by_seed_and_takes_num_prompts() {
    let fixture = Fixture::new();
    let file = sharegpt_fixture(&fixture);
    let options = json!({"file": file, "num_prompts": 4, "max_output_tokens": 77});
    let a = sharegpt(&fixture, options.clone(), 11).unwrap();
    assert_eq!(a.len(), 4);
    // No tokenizer: no lengths, no filters, the fixed output length.
    assert!(a.iter().all(|p| p.input_tokens.is_none()));
    assert!(a.iter().all(|p| p.max_output_tokens == Some(77)));
    assert_eq!(a, sharegpt(&fixture, options.clone(), 11).unwrap());
    let orders: Vec<Vec<String>> = (0..6)
        .map(|seed| {
            sharegpt(&fixture, options.clone(), seed)
                .unwrap()
                .into_iter()
                .map(|p| p.id)
                .collect()
        })
        .collect();
    assert!(
        orders.iter().any(|o| o != &orders[0]),
        "seeds change the order: {orders:?}"
    );
    // The kernel's limit applies too.
    let limited = run(
        &fixture,
        "dataset-sharegpt",
        options,
        &LoadRequest {
            limit: Some(2),
            ..request(11)
        },
    )
    .unwrap();
    assert_eq!(limited, a[..2]);
}

#[test]
fn sharegpt_reports_malformed_json_with_its_position() {
    let fixture = Fixture::new();
    let file = fixture.write(
        "broken.json",
        "[\n  {\"id\": \"a\", \"conversations\": [\n    {\"from\": \"human\", \"value\": \"hi\"},,\n  ]}\n]",
    );
    let err = sharegpt(&fixture, json!({"file": file}), 1).unwrap_err();
    assert!(err.contains(&format!("{file}:3:")), "{err}");
    assert!(err.contains("malformed JSON"), "{err}");

    let file = fixture.write("wrong.json", "[{\"id\": \"a\", \"turns\": []}]");
    let err = sharegpt(&fixture, json!({"file": file}), 1).unwrap_err();
    assert!(err.contains("conversations"), "{err}");
    assert!(err.contains(&format!("{file}:1:")), "{err}");

    let err = sharegpt(
        &fixture,
        json!({"file": fixture.path("absent.json").display().to_string()}),
        1,
    )
    .unwrap_err();
    assert!(err.contains("cannot read"), "{err}");
}

// ------------------------------------------------------------- alpaca

fn alpaca_fixture(fixture: &Fixture) -> String {
    let records = json!([
        {"instruction": "Explain the energy of a model.", "input": "", "output": "It is measured in joules per token."},
        {"instruction": "Summarise the text.", "input": "the latency of the server and the throughput of the engine", "output": "latency and throughput"},
        {"instruction": "Name a cache.", "output": "prefix cache"},
        {"instruction": "Answer", "input": "why is the GPU fast?", "output": ""},
    ]);
    fixture.write("alpaca.json", &records.to_string())
}

fn alpaca(fixture: &Fixture, overrides: Value, seed: u64) -> Result<Vec<Prompt>, String> {
    run(fixture, "dataset-alpaca", overrides, &request(seed))
}

#[test]
fn alpaca_joins_instruction_and_input_and_measures_outputs() {
    let fixture = Fixture::new();
    let file = alpaca_fixture(&fixture);
    let tokenizer = fixture.tokenizer_path.display().to_string();
    let prompts = alpaca(
        &fixture,
        json!({"file": file, "tokenizer": tokenizer, "shuffle": false}),
        1,
    )
    .unwrap();
    assert_eq!(prompts.len(), 4);
    assert_eq!(text(&prompts[0]), "Explain the energy of a model.");
    assert_eq!(
        text(&prompts[1]),
        "Summarise the text.\n\nthe latency of the server and the throughput of the engine"
    );
    assert_eq!(text(&prompts[2]), "Name a cache.");
    assert_exact(&fixture, &prompts);
    assert_eq!(
        prompts[1].max_output_tokens,
        Some(fixture.count("latency and throughput"))
    );
    assert_eq!(
        prompts[3].max_output_tokens,
        Some(1),
        "an empty output asks for one token"
    );

    // A template of one's own, and a length filter.
    let prompts = alpaca(
        &fixture,
        json!({"file": file, "tokenizer": tokenizer, "shuffle": false,
               "template": "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
               "template_no_input": "### Instruction:\n{instruction}\n\n### Response:\n",
               "min_input_tokens": 12}),
        1,
    )
    .unwrap();
    assert!(
        text(&prompts[0]).starts_with("### Instruction:\nExplain")
            && text(&prompts[0]).ends_with("### Response:\n")
    );
    assert!(prompts.iter().all(|p| p.input_tokens.unwrap() >= 12));
    assert_exact(&fixture, &prompts);

    let err = alpaca(
        &fixture,
        json!({"file": file, "template": "{instruction} {output}"}),
        1,
    )
    .unwrap_err();
    assert!(
        err.contains("`template`") && err.contains("{output}"),
        "{err}"
    );

    // Without a tokenizer: max_output_tokens, seeded shuffle.
    let a = alpaca(&fixture, json!({"file": file, "max_output_tokens": 50}), 9).unwrap();
    assert!(
        a.iter()
            .all(|p| p.max_output_tokens == Some(50) && p.input_tokens.is_none())
    );
    assert_eq!(
        a,
        alpaca(&fixture, json!({"file": file, "max_output_tokens": 50}), 9).unwrap()
    );

    let bad = fixture.write(
        "bad-alpaca.json",
        "[{\"instruction\": \"x\"}\n{\"instruction\": \"y\"}]",
    );
    let err = alpaca(&fixture, json!({"file": bad}), 1).unwrap_err();
    assert!(err.contains(&format!("{bad}:2:")), "{err}");
}
