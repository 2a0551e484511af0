//! Study files end to end: parsing and its errors, expansion, apply, hash, plan text.

use std::path::{Path, PathBuf};

use llem_manifest::{ManifestError, ManifestSource, RawValue};

use crate::*;

fn source(text: &str) -> ManifestSource {
    ManifestSource {
        name: "study.toml".to_owned(),
        dir: PathBuf::from("/nonexistent"),
        text: text.to_owned(),
    }
}

fn study(text: &str) -> Study {
    match StudyFile::parse(&source(text)) {
        Ok(s) => s,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn error(text: &str) -> String {
    match StudyFile::parse(&source(text)) {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => e.to_string(),
    }
}

fn labels(study: &Study) -> Vec<&str> {
    study.points.iter().map(|p| p.label.as_str()).collect()
}

const BASE: &str = r#"
[experiment]
name = "qwen"
model = "Qwen/Qwen3-8B"

[plugins.vllm]
max_num_seqs = 16

[plugins.pytorch]
batch_size = 1

[plugins.nvml]

[load]
max_concurrency = 4
"#;

fn with_base(rest: &str) -> String {
    format!("{BASE}\n{rest}")
}

// ---- [study] ----

#[test]
fn study_defaults_and_values() {
    let s = study(&with_base("[sweep]\n\"vllm.max_num_seqs\" = [8]\n"));
    assert_eq!(s.spec.name, "qwen");
    assert_eq!(s.spec.cycles, 1);
    assert_eq!(s.spec.order, Order::Interleave);
    assert_eq!(s.spec.seed, None);
    assert_eq!(s.spec.gap_s, 0.0);
    assert_eq!(s.spec.run_timeout_s, None);
    assert_eq!(s.spec.max_consecutive_failures, 3);

    let s = study(&with_base(
        "[study]\nname = \"b\"\ncycles = 3\norder = \"latin-square\"\nseed = 42\ngap_s = 10\n\
         cycle_gap_s = 60.5\nrun_timeout_s = 1800\ntimeout_s = 86400\nmax_consecutive_failures = 0\n\
         [sweep]\n\"vllm.max_num_seqs\" = [8]\n",
    ));
    let spec = &s.spec;
    assert_eq!(
        (spec.name.as_str(), spec.cycles, spec.order, spec.seed),
        ("b", 3, Order::LatinSquare, Some(42))
    );
    assert_eq!((spec.gap_s, spec.cycle_gap_s), (10.0, 60.5));
    assert_eq!(
        (spec.run_timeout_s, spec.timeout_s),
        (Some(1800.0), Some(86400.0))
    );
    assert_eq!(spec.max_consecutive_failures, 0);
    // The study tables are gone from the base; the run tables are there.
    assert!(!is_study(&s.base));
    assert_eq!(s.base.plugin_instances(), ["vllm", "pytorch", "nvml"]);
}

#[test]
fn study_errors_point_at_the_file() {
    assert_eq!(
        error("[study]\ncycle = 3\n"),
        "study.toml:2:1: unknown key `cycle` in [study]\n  help: did you mean `cycles`?"
    );
    assert_eq!(
        error("[study]\ncycles = \"3\"\n"),
        "study.toml:2:10: `study.cycles` must be an integer from 1, found a string (\"3\")"
    );
    assert_eq!(
        error("[study]\ncycles = 0\n"),
        "study.toml:2:10: `study.cycles` must be an integer from 1, found an integer (0)"
    );
    assert_eq!(
        error("[study]\norder = \"interleaved\"\n"),
        "study.toml:2:9: unknown order `interleaved`\n  help: did you mean `interleave`?"
    );
    assert_eq!(
        error("[study]\ngap_s = -1\n"),
        "study.toml:2:9: `study.gap_s` must be a number of seconds ≥ 0, found an integer (-1)"
    );
    assert!(error("[study\n").starts_with("study.toml:1:7: invalid TOML"));
}

#[test]
fn a_study_without_configurations_says_what_to_add() {
    let e = error(&with_base("[study]\ncycles = 2\n"));
    assert!(
        e.starts_with("study.toml: the study has no configurations"),
        "{e}"
    );
    assert!(e.contains("[[experiments]]"), "{e}");
}

// ---- [sweep] ----

#[test]
fn two_axes_of_two_values_make_four_labelled_points() {
    let s = study(&with_base(
        "[sweep]\n\"vllm.max_num_seqs\" = [8, 32]\n\"load.max_concurrency\" = [1, 8]\n",
    ));
    assert_eq!(
        labels(&s),
        [
            "max_num_seqs=8 max_concurrency=1",
            "max_num_seqs=8 max_concurrency=8",
            "max_num_seqs=32 max_concurrency=1",
            "max_num_seqs=32 max_concurrency=8"
        ]
    );
    let p = &s.points[3];
    assert_eq!(p.sets.len(), 2);
    assert_eq!(p.sets[0].key, "vllm.max_num_seqs");
    assert_eq!(p.sets[0].value, toml::Value::Integer(32));
    assert_eq!(p.backend, None);
    assert_eq!(p.id.len(), 8);
    assert!(p.id.chars().all(|c| c.is_ascii_hexdigit()));
    let mut ids: Vec<&str> = s.points.iter().map(|p| p.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}

#[test]
fn unquoted_keys_and_sub_tables_are_axes_too() {
    let s = study(&with_base(
        "[sweep]\nvllm.max_num_seqs = [8, 32]\n[sweep.load]\nmax_concurrency = [2]\n",
    ));
    assert_eq!(
        labels(&s),
        [
            "max_num_seqs=8 max_concurrency=2",
            "max_num_seqs=32 max_concurrency=2"
        ]
    );
    assert_eq!(s.points[0].sets[1].key, "load.max_concurrency");
}

#[test]
fn together_zips_and_one_of_unions() {
    let s = study(&with_base(
        r#"[sweep]
"load.max_concurrency" = [1, 8]

[[sweep.together]]
"experiment.model" = ["a", "b"]
"vllm.tensor_parallel_size" = [1, 2]

[[sweep.one_of]]
alternatives = [ { backend = "vllm", "vllm.max_num_seqs" = 64 }, { backend = "pytorch", "pytorch.batch_size" = 8 } ]
"#,
    ));
    // 2 (axis) × 2 (together) × 2 (one_of)
    assert_eq!(s.points.len(), 8);
    assert_eq!(
        labels(&s)[..3],
        [
            "max_concurrency=1 model=a tensor_parallel_size=1 backend=vllm max_num_seqs=64",
            "max_concurrency=1 model=a tensor_parallel_size=1 backend=pytorch batch_size=8",
            "max_concurrency=1 model=b tensor_parallel_size=2 backend=vllm max_num_seqs=64",
        ]
    );
    assert_eq!(s.points[1].backend.as_deref(), Some("pytorch"));
    let keys: Vec<&str> = s.points[1].sets.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "load.max_concurrency",
            "experiment.model",
            "vllm.tensor_parallel_size",
            "pytorch.batch_size"
        ]
    );
}

#[test]
fn explicit_experiments_follow_the_sweep_or_stand_alone() {
    let s = study(&with_base(
        "[sweep]\n\"vllm.max_num_seqs\" = [8]\n\n[[experiments]]\nname = \"long-prompts\"\n\"load.max_concurrency\" = 64\n\n[[experiments]]\n\"load.max_concurrency\" = 2\nbackend = \"pytorch\"\n",
    ));
    assert_eq!(
        labels(&s),
        [
            "max_num_seqs=8",
            "long-prompts",
            "backend=pytorch max_concurrency=2"
        ]
    );
    assert_eq!(s.points[2].backend.as_deref(), Some("pytorch"));

    let s = study(&with_base("[[experiments]]\nname = \"base\"\n"));
    assert_eq!(labels(&s), ["base"]);
    assert!(s.points[0].sets.is_empty());
}

#[test]
fn duplicates_are_skipped_with_the_first_label() {
    let s = study(&with_base(
        "[sweep]\n\"vllm.max_num_seqs\" = [8, 32, 8]\n\n[[experiments]]\nname = \"again\"\n\"vllm.max_num_seqs\" = 32\n",
    ));
    assert_eq!(labels(&s), ["max_num_seqs=8", "max_num_seqs=32"]);
    assert_eq!(
        s.skipped,
        [
            Skipped {
                label: "max_num_seqs=8".into(),
                reason: "duplicate of max_num_seqs=8".into()
            },
            Skipped {
                label: "again".into(),
                reason: "duplicate of max_num_seqs=32".into()
            },
        ]
    );
}

#[test]
fn clashing_short_names_keep_the_full_key() {
    let s = study(&with_base(
        "[sweep]\n\"vllm.dtype\" = [\"auto\"]\n\"pytorch.dtype\" = [\"bfloat16\"]\n",
    ));
    assert_eq!(labels(&s), ["vllm.dtype=auto pytorch.dtype=bfloat16"]);
}

#[test]
fn sweep_errors_point_at_the_file() {
    assert_eq!(
        error("[sweep]\n\"vllm.max_num_seqs\" = []\n"),
        "study.toml:2:23: `sweep.vllm.max_num_seqs` lists no values\n  help: give at least one value, e.g. `[8, 32]`, or remove the key"
    );
    let e = error("[sweep]\n\"vllm.max_num_seqs\" = 8\n");
    assert!(e.starts_with("study.toml:2:23: `sweep.vllm.max_num_seqs` must be a list of values, found an integer (8)"), "{e}");
    let e = error(
        "[sweep]\nx = 1\n[[sweep.together]]\n\"experiment.model\" = [\"a\", \"b\"]\n\"vllm.tensor_parallel_size\" = [1]\n",
    );
    assert!(
        e.starts_with("study.toml:2:1: unknown key `x` in [sweep]"),
        "{e}"
    );
    let e = error(
        "[[sweep.together]]\n\"experiment.model\" = [\"a\", \"b\"]\n\"vllm.tensor_parallel_size\" = [1]\n",
    );
    assert_eq!(
        e.lines().next(),
        Some(
            "study.toml:3:1: the lists of a `together` group must have one length: `experiment.model` has 2, `vllm.tensor_parallel_size` has 1"
        )
    );
    let e = error("[[sweep.togther]]\n\"experiment.model\" = [\"a\"]\n");
    assert!(
        e.contains("unknown key `togther` in [sweep]") && e.contains("did you mean `together`?"),
        "{e}"
    );
    let e = error("[[sweep.one_of]]\nalternative = [{ backend = \"vllm\" }]\n");
    assert_eq!(
        e,
        "study.toml:2:1: unknown key `alternative` in [[sweep.one_of]]\n  help: did you mean `alternatives`?"
    );
    let e = error(&with_base("[[experiments]]\nbackend = \"vlm\"\n"));
    assert!(
        e.starts_with("study.toml:18:11: `backend = \"vlm\"` names no `[plugins.vlm]`"),
        "{e}"
    );
    assert!(e.contains("did you mean `vllm`?"), "{e}");
}

// ---- base inheritance (files) ----

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Err(e) = std::fs::write(&path, text) {
        panic!("{e}");
    }
    path
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

fn load(path: &Path) -> Result<Study, ManifestError> {
    StudyFile::load(path)
}

#[test]
fn base_is_inherited_and_overridden_key_by_key() {
    let dir = tempdir();
    write(dir.path(), "experiment.toml", BASE);
    let path = write(
        dir.path(),
        "study.toml",
        "[study]\nbase = \"experiment.toml\"\n[plugins.vllm]\ndtype = \"bfloat16\"\n[sweep]\n\"load.max_concurrency\" = [1, 2]\n",
    );
    let s = match load(&path) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(s.spec.name, "qwen");
    let vllm = s
        .base
        .root
        .get("plugins")
        .and_then(|p| match &p.item.value {
            RawValue::Table(t) => t.get("vllm"),
            _ => None,
        });
    let vllm = match vllm.map(|e| &e.item.value) {
        Some(RawValue::Table(t)) => t,
        other => panic!("{other:?}"),
    };
    let keys: Vec<&str> = vllm.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["max_num_seqs", "dtype"]);
}

#[test]
fn base_errors_name_the_base_file() {
    let dir = tempdir();
    let path = write(
        dir.path(),
        "study.toml",
        "[study]\nbase = \"missing.toml\"\n",
    );
    let e = match load(&path) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    let shown = path.display().to_string();
    assert!(e.starts_with(&format!("{shown}:2:8: cannot read `")), "{e}");
    assert!(e.contains("missing.toml"), "{e}");

    write(dir.path(), "broken.toml", "[experiment]\nname = \n");
    let path = write(
        dir.path(),
        "study2.toml",
        "[study]\nbase = \"broken.toml\"\n",
    );
    let e = match load(&path) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    let base = dir.path().join("broken.toml").display().to_string();
    assert!(e.starts_with(&format!("{base}:2:8: invalid TOML")), "{e}");
}

// ---- apply ----

fn backends(instance: &str) -> bool {
    matches!(instance, "vllm" | "pytorch")
}

fn plugin_option(raw: &llem_manifest::RawManifest, instance: &str, key: &str) -> Option<RawValue> {
    let plugins = match &raw.root.get("plugins")?.item.value {
        RawValue::Table(t) => t,
        _ => return None,
    };
    match &plugins.get(instance)?.item.value {
        RawValue::Table(t) => t.get(key).map(|e| e.item.value.clone()),
        _ => None,
    }
}

#[test]
fn apply_sets_values_and_selects_the_backend() {
    let s = study(&with_base(
        "[sweep]\n\"load.max_concurrency\" = [8]\n[[sweep.one_of]]\nalternatives = [ { backend = \"vllm\", \"vllm.max_num_seqs\" = 64 }, { backend = \"pytorch\", \"pytorch.batch_size\" = 8 } ]\n",
    ));
    let raw = match apply(&s.base, &s.points[0], backends) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(raw.plugin_instances(), ["vllm", "nvml"]);
    assert_eq!(
        plugin_option(&raw, "vllm", "max_num_seqs"),
        Some(RawValue::Integer(64))
    );
    let load = match &raw.root.get("load").map(|e| &e.item) {
        Some(item) => match &item.value {
            RawValue::Table(t) => t.get("max_concurrency").map(|e| e.item.clone()),
            _ => None,
        },
        None => None,
    };
    let load = match load {
        Some(item) => item,
        None => panic!("no load.max_concurrency"),
    };
    assert_eq!(load.value, RawValue::Integer(8));
    // The set value reads as written in the study file (line 18 of with_base's text).
    assert_eq!(
        load.loc,
        llem_manifest::Loc::File {
            line: 18,
            column: 27
        }
    );

    let raw = match apply(&s.base, &s.points[1], backends) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(raw.plugin_instances(), ["pytorch", "nvml"]);
    assert_eq!(
        plugin_option(&raw, "pytorch", "batch_size"),
        Some(RawValue::Integer(8))
    );
    // The base is untouched.
    assert_eq!(s.base.plugin_instances(), ["vllm", "pytorch", "nvml"]);
}

#[test]
fn apply_refuses_sets_on_instances_the_point_does_not_have() {
    let s = study(&with_base(
        "[[experiments]]\nbackend = \"pytorch\"\n\"vllm.max_num_seqs\" = 64\n\n[[experiments]]\n\"vlm.max_num_seqs\" = 64\n",
    ));
    let e = match apply(&s.base, &s.points[0], backends) {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.starts_with("study.toml:19:23: `vllm.max_num_seqs` sets an option of `vllm`, which this configuration does not run"),
        "{e}"
    );
    let e = match apply(&s.base, &s.points[1], backends) {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("`vlm.max_num_seqs` sets an option of `vlm`, which the manifest has no `[plugins.vlm]` for"), "{e}");
    assert!(e.contains("did you mean `vllm`?"), "{e}");
}

#[test]
fn apply_keeps_strings_strings() {
    let s = study(&with_base(
        "[sweep]\n\"experiment.model\" = [\"org/a b\", \"2024\"]\n",
    ));
    let raw = match apply(&s.base, &s.points[1], backends) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let model = match &raw.root.get("experiment").map(|e| &e.item.value) {
        Some(RawValue::Table(t)) => t.get("model").map(|e| e.item.value.clone()),
        _ => None,
    };
    assert_eq!(model, Some(RawValue::String("2024".into())));
    assert_eq!(labels(&s), ["model=org/a b", "model=2024"]);
}

// ---- hash ----

fn hash(text: &str, seed: u64) -> String {
    design_hash(&study(text), seed)
}

#[test]
fn the_hash_ignores_how_the_file_is_written() {
    let a = "[study]\ncycles = 2\n[experiment]\nname = \"x\"\nmodel = \"m\"\n[plugins.vllm]\nmax_num_seqs = 16\n[sweep]\n\"load.max_concurrency\" = [1, 2]\n";
    let b = "# reordered, commented\n[plugins.vllm]\n  max_num_seqs   =   16   # sixteen\n\n[experiment]\nmodel = \"m\"\nname = \"x\"\n[sweep]\n\"load.max_concurrency\" = [ 1, 2, ]\n[study]\ncycles = 2\n";
    let h = hash(a, 0);
    assert_eq!(h.len(), HASH_LEN);
    assert_eq!(h, hash(b, 0));
    // Pacing is not design.
    assert_eq!(
        h,
        hash(
            &a.replace("cycles = 2", "cycles = 2\ngap_s = 5\ntimeout_s = 60"),
            0
        )
    );
}

#[test]
fn the_hash_changes_with_the_design() {
    let base = "[study]\ncycles = 2\norder = \"interleave\"\n[experiment]\nmodel = \"m\"\n[sweep]\n\"load.max_concurrency\" = [1, 2]\n";
    let h = hash(base, 0);
    for changed in [
        base.replace("model = \"m\"", "model = \"n\""),
        base.replace("[1, 2]", "[1, 3]"),
        base.replace("cycles = 2", "cycles = 3"),
        base.replace("interleave", "reverse"),
        base.replace("[experiment]", "[load]\nrequest_rate = 2.0\n[experiment]"),
    ] {
        assert_ne!(h, hash(&changed, 0), "{changed}");
    }
    // The seed counts for the orders it changes, only.
    assert_eq!(h, hash(base, 1));
    let shuffled = base.replace("interleave", "shuffle");
    assert_ne!(hash(&shuffled, 0), hash(&shuffled, 1));
    // Integer vs float is a change.
    assert_ne!(h, hash(&base.replace("[1, 2]", "[1, 2.0]"), 0));
}

// ---- plan text ----

#[test]
fn plan_text_heads_the_plan_and_lists_skips() {
    let s = study(&with_base(
        "[study]\nname = \"qwen-batch\"\ncycles = 3\n[sweep]\n\"vllm.max_num_seqs\" = [8, 32, 8]\n\"load.max_concurrency\" = [1]\n",
    ));
    assert_eq!(
        plan_text(&s, "3f9a1c02ab12", &[]),
        "Study qwen-batch [3f9a1c02ab12]: 2 configs × 3 cycles = 6 runs · order interleave, skipping 1\n  \
         skipping max_num_seqs=8 max_concurrency=1: duplicate of max_num_seqs=8 max_concurrency=1"
    );
    let refused = Skipped {
        label: "max_num_seqs=32 max_concurrency=1".into(),
        reason: "vLLM refuses: too many sequences".into(),
    };
    let text = plan_text(&s, "3f9a1c02ab12", &[refused]);
    assert!(text.starts_with("Study qwen-batch [3f9a1c02ab12]: 1 config × 3 cycles = 3 runs · order interleave, skipping 2\n"), "{text}");
    assert!(
        text.ends_with(
            "\n  skipping max_num_seqs=32 max_concurrency=1: vLLM refuses: too many sequences"
        ),
        "{text}"
    );
}

#[test]
fn studies_are_told_from_run_manifests() {
    let parse = |text: &str| match llem_manifest::parse(&source(text)) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert!(!is_study(&parse(BASE)));
    assert!(is_study(&parse("[sweep]\n")));
    assert!(is_study(&parse("[[experiments]]\n")));
    assert!(is_study(&parse("[study]\n")));
}
