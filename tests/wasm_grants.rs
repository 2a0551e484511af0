//! Attacks on the sandbox's grants, limits and cache, from the plugin's side
//! (tests/fixtures/plugins/dataset-hostile, sink-hostile, energy-loud): a
//! plugin granting itself files through its own defaults, escaping a file
//! grant to its siblings, writing outside its grant, handing the host a 1 GB
//! string, a 60 MB error or escape sequences, flooding the log, and swapping a
//! compiled cache entry. Each must fail, visibly and without harm.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::discovery::SearchPath;
use llem::experiment::sandbox_for;
use llem::manifest::{GrantAccess, GrantedBy, ManifestSource, Plan};
use llem::plugin::{FailureKind, PluginFailure};
use llem::{Catalog, Sandbox};
use llem_integration_tests::{fresh_loader, llem, loader, output, plugin_dir, wasm_artifact};
use llem_sdk::LoadRequest;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// A directory with `data/prompts.json`, a secret beside it, and `out/`.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("data/prompts.json"), "[\"hi\"]").unwrap();
        std::fs::write(dir.path().join("data/id_rsa"), "PRIVATE KEY").unwrap();
        Tree { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }
}

/// Resolve `text` as a manifest (in `dir`) against a catalog of just `plugins`.
fn resolve(dir: &Path, plugins: &[&str], text: &str) -> (Catalog, Plan) {
    let files: Vec<PathBuf> = plugins.iter().map(|p| wasm_artifact(p)).collect();
    let plugin_dir = plugin_dir(&files);
    let catalog = Catalog::new(SearchPath::only([plugin_dir.keep()]), loader());
    let source = ManifestSource {
        name: "experiment.toml".into(),
        dir: dir.to_owned(),
        text: text.into(),
    };
    let raw = llem::manifest::parse(&source).unwrap();
    let plan = llem::manifest::resolve(&raw, &catalog).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors.iter().map(|e| format!("{e}\n")).collect::<String>()
        )
    });
    (catalog, plan)
}

/// Resolve one `dataset-hostile` instance and call `load` under its sandbox.
fn hostile_load(tree: &Tree, table: &str) -> (Plan, PluginFailure) {
    let text = format!("[plugins.hostile]\nplugin = \"dataset-hostile\"\n{table}");
    let (catalog, plan) = resolve(tree.dir.path(), &["dataset-hostile"], &text);
    let entry = &plan.plugins[0];
    let plugin = catalog.load_path(&entry.location).unwrap();
    let err = plugin
        .open_dataset(&entry.config, &sandbox_for(entry, None))
        .and_then(|mut d| d.load(&load_request()))
        .expect_err("the fixture's attacks all end in an error");
    (plan, err)
}

fn load_request() -> LoadRequest {
    LoadRequest {
        model: String::new(),
        tokenizer_path: None,
        seed: 0,
        limit: None,
    }
}

fn config(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

// ------------------------------------------------------------------- grants

#[test]
fn a_default_of_slash_grants_nothing() {
    let tree = Tree::new();
    let secret = tree.s("data/id_rsa");
    let (plan, err) = hostile_load(
        &tree,
        &format!("attack = \"read\"\ntarget = \"{secret}\"\n"),
    );
    assert!(
        plan.plugins[0].grants.is_empty(),
        "{:?}",
        plan.plugins[0].grants
    );
    assert!(plan.plugins[0].sandbox.read_dirs.is_empty());
    assert!(!err.message.contains("SANDBOX LEAK"), "{err}");
    assert!(err.message.contains(&format!("reading {secret}")), "{err}");
    // Nor /etc/passwd, which the default `root = "/"` would have covered.
    let (_, err) = hostile_load(&tree, "attack = \"read\"\ntarget = \"/etc/passwd\"\n");
    assert!(
        !err.message.contains("SANDBOX LEAK") && !err.message.contains("root:"),
        "{err}"
    );
}

#[test]
fn fix_hints_name_the_instance_table() {
    let tree = Tree::new();
    // A gigabyte does not fit the default 256 MiB cap.
    let (_, err) = hostile_load(&tree, "attack = \"huge-error\"\nsize = 1073741824\n");
    assert_eq!(err.kind, FailureKind::MemoryLimit, "{err}");
    assert_eq!(
        err.hint.as_deref(),
        Some(
            "if the plugin really needs more, raise `memory_mib` (at most 4096) in [plugins.hostile.sandbox]"
        )
    );
}

#[test]
fn a_file_option_grants_that_file_and_nothing_beside_it() {
    let tree = Tree::new();
    let file = tree.s("data/prompts.json");
    let named = format!("file = \"{file}\"\n");
    // The named file is readable: the fixture reports what it read.
    let (plan, err) = hostile_load(
        &tree,
        &format!("{named}attack = \"read\"\ntarget = \"{file}\"\n"),
    );
    assert_eq!(plan.plugins[0].grants.len(), 1);
    let grant = &plan.plugins[0].grants[0];
    assert_eq!(
        (grant.access, grant.by),
        (GrantAccess::ReadFile, GrantedBy::User)
    );
    assert_eq!(grant.target, file);
    assert!(
        err.message.contains("read 6 bytes: [\"hi\"]"),
        "granted file readable: {err}"
    );
    // Its directory holds only that file, as the plugin sees it.
    let (_, err) = hostile_load(
        &tree,
        &format!(
            "{named}attack = \"list\"\ntarget = \"{}\"\n",
            tree.s("data")
        ),
    );
    assert_eq!(err.message, "listing: prompts.json", "{err}");
    // The sibling is not there, directly or through `..`.
    for target in [
        tree.s("data/id_rsa"),
        format!("{}/../data/id_rsa", tree.s("data")),
    ] {
        let (_, err) = hostile_load(
            &tree,
            &format!("{named}attack = \"read\"\ntarget = \"{target}\"\n"),
        );
        assert!(!err.message.contains("SANDBOX LEAK"), "{err}");
        assert!(!err.message.contains("PRIVATE KEY"), "{err}");
    }
    // And the file is read-only.
    let plugin = loader().load(&wasm_artifact("dataset-hostile")).unwrap();
    let sandbox = Sandbox {
        read_dirs: vec![tree.path("data/prompts.json")],
        ..Sandbox::default()
    };
    let err = plugin
        .open_dataset(&config(json!({"attack": "read", "target": tree.s("data/prompts.json"), "root": "/", "file": "", "size": 0})), &sandbox)
        .and_then(|mut d| d.load(&load_request()))
        .unwrap_err();
    assert!(err.message.contains("SANDBOX LEAK: read 6 bytes"), "{err}");
}

#[test]
fn a_sink_default_grants_no_write_and_a_named_file_is_all_it_can_write() {
    let tree = Tree::new();
    let run_dir = tree.path("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let document = llem_sdk::ResultDocument {
        schema_version: "0.1.0".into(),
        run_id: "r".into(),
        json: "{\"ok\":true}".into(),
    };
    let write = |table: &str| {
        let text = format!("[plugins.out]\nplugin = \"sink-hostile\"\n{table}");
        let (catalog, plan) = resolve(tree.dir.path(), &["sink-hostile"], &text);
        let entry = &plan.plugins[0];
        let plugin = catalog.load_path(&entry.location).unwrap();
        let outcome = plugin
            .open_sink(&entry.config, &sandbox_for(entry, Some(&run_dir)))
            .and_then(|mut s| s.write_result(&document));
        (plan, outcome)
    };
    // Default `file = "/"`: no grant; writing anywhere outside the run directory fails.
    let outside = tree.s("out/pwned.txt");
    let (plan, outcome) = write(&format!("target = \"{outside}\"\n"));
    assert!(
        plan.plugins[0].grants.is_empty(),
        "{:?}",
        plan.plugins[0].grants
    );
    let err = outcome.unwrap_err();
    assert!(!err.message.contains("SANDBOX LEAK"), "{err}");
    assert!(!tree.path("out/pwned.txt").exists());

    // A file the user names is written, and it alone: its sibling is refused.
    let results = tree.s("out/results.json");
    let (plan, outcome) = write(&format!("file = \"{results}\"\n"));
    assert_eq!(plan.plugins[0].grants[0].access, GrantAccess::WriteFile);
    outcome.unwrap();
    assert_eq!(std::fs::read_to_string(&results).unwrap(), "{\"ok\":true}");
    // The plugin believes it wrote its sibling (the fixture says "LEAK"): the
    // write landed in its private directory, deleted when the sink closed.
    std::fs::write(&results, "old").unwrap();
    let (_, outcome) = write(&format!("file = \"{results}\"\ntarget = \"{outside}\"\n"));
    assert!(outcome.unwrap_err().message.contains("wrote"));
    assert!(
        !tree.path("out/pwned.txt").exists(),
        "the sibling was written"
    );
    assert_eq!(std::fs::read_to_string(&results).unwrap(), "{\"ok\":true}");
    let left: Vec<_> = std::fs::read_dir(tree.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["results.json"]);
    assert!(tree.path("data/id_rsa").exists() && tree.path("data/prompts.json").exists());
}

// ------------------------------------------------------------------- limits

fn hostile_with(cfg: Value, sandbox: &Sandbox) -> PluginFailure {
    let plugin = loader().load(&wasm_artifact("dataset-hostile")).unwrap();
    let mut full = json!({"root": "/", "file": "", "attack": "none", "target": "", "size": 0});
    for (k, v) in config(cfg) {
        full[k] = v;
    }
    plugin
        .open_dataset(&config(full), sandbox)
        .and_then(|mut d| d.load(&load_request()))
        .unwrap_err()
}

#[test]
fn a_gigabyte_string_is_stopped_before_it_reaches_anyone() {
    // Under the default 256 MiB cap the plugin cannot even build it.
    let err = hostile_with(
        json!({"attack": "huge-error", "size": 1u64 << 30}),
        &Sandbox::default(),
    );
    assert_eq!(err.kind, FailureKind::MemoryLimit, "{err}");
    // With room to build it, the host refuses to copy it out (128 MiB a call).
    let roomy = Sandbox {
        memory_bytes: 2048 << 20,
        // Building a gigabyte in a debug build on a busy machine takes seconds.
        call_timeout: std::time::Duration::from_secs(60),
        ..Sandbox::default()
    };
    let err = hostile_with(json!({"attack": "huge-error", "size": 1u64 << 30}), &roomy);
    assert_eq!(err.kind, FailureKind::Other, "{err}");
    assert_eq!(
        err.message,
        "returned more than the 128 MiB llem copies out of a plugin in one call, and was stopped"
    );
    // Under that, a long error is cut to 4 KiB, saying how much was cut.
    let size = 60_000_000u64;
    let err = hostile_with(json!({"attack": "huge-error", "size": size}), &roomy);
    assert_eq!(
        err.message,
        format!(
            "{} … [{} more bytes cut by llem]",
            "E".repeat(4096),
            size - 4096
        )
    );
    let hint = err.hint.unwrap();
    assert!(
        hint.starts_with(&"H".repeat(1024)) && hint.len() < 1100,
        "{}",
        hint.len()
    );
}

#[test]
fn escape_sequences_are_shown_not_executed() {
    let err = hostile_with(json!({"attack": "escape-error"}), &Sandbox::default());
    let text = err.to_string();
    for bad in ['\x1b', '\r', '\x07', '\u{202e}'] {
        assert!(!text.contains(bad), "{bad:?} passed through: {text:?}");
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "one line for the error, one for the hint: {text}"
    );
    assert!(lines[0].starts_with("plugin `dataset-hostile` (load): \\x1b[2J\\x1b[H\\n✔ all measurements verified\\nerror: forged"), "{text}");
    assert!(lines[1].starts_with("  fix: \\x1b[2J"), "{text}");
}

#[test]
fn lists_over_the_limit_are_refused_not_cut() {
    let err = hostile_with(
        json!({"attack": "many-prompts", "size": 1_000_001}),
        &Sandbox {
            memory_bytes: 512 << 20,
            call_timeout: std::time::Duration::from_secs(120),
            ..Sandbox::default()
        },
    );
    assert_eq!(
        err.message,
        "returned a prompt list of 1000001, more than the 1000000 llem accepts from a plugin"
    );
    assert_eq!(err.call, "load");
}

// -------------------------------------------------------------------- cache

fn cwasm_entries(components: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(components)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    entries.sort();
    entries
}

fn seal(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.sha256")
}

#[test]
fn a_cache_entry_of_another_component_is_not_run() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let components = cache.join("components");
    let fixture = wasm_artifact("energy-fixture");
    let hostile = wasm_artifact("energy-hostile");
    fresh_loader(&cache).load(&fixture).unwrap();
    let entries = cwasm_entries(&components);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let a = entries[0].clone();
    fresh_loader(&cache).load(&hostile).unwrap();
    let b = cwasm_entries(&components)
        .into_iter()
        .find(|p| *p != a)
        .unwrap();
    // Private: the directory 0700, entries and seals 0600.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&components), 0o700);
    assert_eq!((mode(&a), mode(&seal(&a))), (0o600, 0o600));

    let loads_as_itself = || {
        fresh_loader(&cache)
            .load(&fixture)
            .unwrap()
            .name()
            .to_owned()
    };
    // 1. The other component's code under this key, this key's seal kept.
    std::fs::copy(&b, &a).unwrap();
    assert_eq!(loads_as_itself(), "energy-fixture");
    // 2. Code and seal both swapped in.
    std::fs::copy(&b, &a).unwrap();
    std::fs::copy(seal(&b), seal(&a)).unwrap();
    assert_eq!(loads_as_itself(), "energy-fixture");
    // 3. A seal forged to name this component, in a cache others can write:
    //    refused for its permissions alone.
    let a_seal = std::fs::read_to_string(seal(&a)).unwrap(); // rewritten by the reload
    let b_seal = std::fs::read_to_string(seal(&b)).unwrap();
    let forged = format!(
        "{}\n{}\n{}\n",
        a_seal.lines().next().unwrap(),
        a_seal.lines().nth(1).unwrap(),
        b_seal.lines().nth(2).unwrap()
    );
    std::fs::copy(&b, &a).unwrap();
    std::fs::write(seal(&a), forged).unwrap();
    std::fs::set_permissions(&components, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(loads_as_itself(), "energy-fixture");
    std::fs::set_permissions(&components, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        loads_as_itself(),
        "energy-fixture",
        "a world-writable entry is refused too"
    );
}

// ---------------------------------------------------------------------- CLI

fn cli_plugins(extra: &[&str]) -> tempfile::TempDir {
    let mut files = vec![wasm_artifact("energy-fixture")];
    files.extend(extra.iter().map(|p| wasm_artifact(p)));
    plugin_dir(&files)
}

fn only_run(out: &Path, name: &str) -> PathBuf {
    std::fs::read_dir(out.join(name))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

#[test]
fn grants_are_printed_and_recorded_in_the_run() {
    let tree = Tree::new();
    let plugins = cli_plugins(&["dataset-hostile"]);
    let file = tree.s("data/prompts.json");
    let manifest = tree.path("exp.toml");
    std::fs::write(
        &manifest,
        format!(
            "[experiment]\nname = \"g\"\nduration_s = 0.2\noutput_dir = \"{}\"\n\
             [plugins.fixture]\n[plugins.hostile]\nplugin = \"dataset-hostile\"\nfile = \"{file}\"\n",
            tree.s("runs")
        ),
    )
    .unwrap();
    let (code, _, stderr) = output(llem(plugins.path()).arg("run").arg(&manifest));
    assert_eq!(code, 0, "{stderr}");
    let printed = format!("✔ grant: hostile may read the file {file} (plugins.hostile.file)");
    assert!(stderr.lines().any(|l| l == printed), "{stderr}");
    let run = only_run(&tree.path("runs"), "g");
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
    assert_eq!(
        result["grants"],
        json!([{"instance": "hostile", "access": "read-file", "target": file,
                "key": "plugins.hostile.file", "by": "user"}])
    );
    let resolved = std::fs::read_to_string(run.join("manifest.resolved.toml")).unwrap();
    assert!(
        resolved.contains(&format!("#   hostile may read the file {file}")),
        "{resolved}"
    );
    assert!(resolved.contains("grant_paths = false"), "{resolved}");
}

#[test]
fn a_third_party_plugin_is_not_chosen_without_being_named() {
    // energy-fixture claims real (not estimated) counters; on the plugin path it
    // is still never picked for a run that names no energy source.
    let plugins = cli_plugins(&[]);
    let out = tempfile::tempdir().unwrap();
    let (_, _, stderr) = output(
        llem(plugins.path())
            .args(["run", "--duration", "0.2", "--output"])
            .arg(out.path()),
    );
    assert!(!stderr.contains("fixture (energy)"), "{stderr}");
    if let Some(line) = stderr
        .lines()
        .find(|l| l.contains("energy sources that work"))
    {
        assert!(!line.contains("fixture"), "{line}");
    }
}

fn loud_run(error: &str) -> (String, Value, u64) {
    let tree = Tree::new();
    let plugins = cli_plugins(&["energy-loud"]);
    let manifest = tree.path("exp.toml");
    std::fs::write(
        &manifest,
        format!(
            "[experiment]\nname = \"loud\"\nduration_s = 1.5\nsample_interval_ms = 20\noutput_dir = \"{}\"\n\
             [plugins.loud]\nerror = \"{error}\"\nsize = 60000000\n[plugins.loud.sandbox]\nmemory_mib = 512\n",
            tree.s("runs")
        ),
    )
    .unwrap();
    let (_, _, stderr) = output(llem(plugins.path()).arg("run").arg(&manifest));
    let run = only_run(&tree.path("runs"), "loud");
    let text = std::fs::read_to_string(run.join("result.json")).unwrap();
    let size = text.len() as u64;
    (stderr, serde_json::from_str(&text).unwrap(), size)
}

#[test]
fn a_60_mb_error_repeated_stays_small_in_the_run() {
    let (stderr, result, size) = loud_run("huge");
    let warnings = result["warnings"].as_array().unwrap();
    let cut: Vec<&Value> = warnings
        .iter()
        .filter(|w| w.as_str().unwrap().contains("more bytes cut by llem"))
        .collect();
    // Each failing read returned 60 MB; every one is cut (the sampler gives up
    // after three, and a read that builds 60 MB takes a while).
    assert!(cut.len() >= 2, "{warnings:?}");
    assert!(size < 64 << 10, "result.json is {size} bytes");
    assert!(stderr.len() < 64 << 10, "stderr is {} bytes", stderr.len());
}

#[test]
fn escape_sequences_reach_neither_terminal_nor_result() {
    let (stderr, result, _) = loud_run("escape");
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "{stderr:?}"
    );
    for line in stderr.lines() {
        assert!(!line.starts_with("error: forged"), "{stderr}");
        assert!(!line.starts_with("✔ all measurements"), "{stderr}");
    }
    let warnings = result["warnings"].to_string();
    assert!(warnings.contains("\\\\x1b[2J"), "shown escaped: {warnings}");
    assert!(!warnings.contains("\\u001b"), "{warnings}");
}

#[test]
fn a_log_flood_is_cut_and_counted() {
    let tree = Tree::new();
    let plugins = cli_plugins(&["dataset-hostile"]);
    let manifest = tree.path("exp.toml");
    std::fs::write(
        &manifest,
        format!(
            "[experiment]\nname = \"flood\"\nduration_s = 0.2\noutput_dir = \"{}\"\n\
             [plugins.fixture]\n[plugins.hostile]\nplugin = \"dataset-hostile\"\nattack = \"log-flood\"\nsize = 100000\n",
            tree.s("runs")
        ),
    )
    .unwrap();
    let (code, _, stderr) = output(llem(plugins.path()).arg("run").arg(&manifest));
    assert_eq!(code, 0, "{stderr}");
    let flood = stderr.lines().filter(|l| l.contains("flood ")).count();
    assert!(
        (1..=150).contains(&flood),
        "{flood} flood lines reached the terminal"
    );
    assert!(stderr.contains("log lines dropped"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
}

#[test]
fn config_validate_points_at_a_grant_of_a_missing_path() {
    let tree = Tree::new();
    let plugins = cli_plugins(&["dataset-hostile"]);
    let manifest = tree.path("exp.toml");
    let missing = tree.s("no-such-dir");
    std::fs::write(
        &manifest,
        format!("[plugins.hostile]\nplugin = \"dataset-hostile\"\n[plugins.hostile.sandbox]\nread = [\"{missing}\"]\n"),
    )
    .unwrap();
    let (code, _, stderr) = output(
        llem(plugins.path())
            .args(["config", "validate"])
            .arg(&manifest),
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:4:9: `plugins.hostile.sandbox.read` grants {missing}, which does not exist",
            manifest.display()
        )),
        "{stderr}"
    );
}

#[test]
fn plugins_inspect_says_what_a_plugin_may_touch() {
    let plugins = cli_plugins(&["dataset-hostile"]);
    let (code, stdout, stderr) =
        output(llem(plugins.path()).args(["plugins", "inspect", "dataset-hostile"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("access: sandboxed"), "{stdout}");
    assert!(
        stdout.contains("its own defaults grant nothing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("granted with no option set: nothing"),
        "{stdout}"
    );
    let (_, json, _) =
        output(llem(plugins.path()).args(["plugins", "inspect", "dataset-hostile", "--json"]));
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["sandboxed"], true);
    assert_eq!(json["shipped"], false);
    assert_eq!(json["default_grants"], json!([]));
}
