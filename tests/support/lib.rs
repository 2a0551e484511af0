//! Helpers shared by the integration tests: where the built fixtures are, and
//! how to compile the C fixtures against the SDK header.

pub mod powercap;
pub mod stream_server;

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn must_exist(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: build the plugins and fixtures first with `cargo xtask test` (or `cargo xtask fixtures`)",
        path.display()
    );
    path
}

/// The project's Python (`.venv/bin/python`: CPU torch + transformers), for
/// tests that run the real PyTorch worker.
pub fn venv_python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash tests/python/setup-venv.sh` (CI does)",
        python.display()
    );
    python
}

/// A tiny, randomly initialised Llama with its tokenizer
/// (tests/python/make_tiny_model.py; nothing is downloaded), made once per
/// test process.
pub fn tiny_model() -> &'static Path {
    static MODEL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("llem-tiny-llama-{}", std::process::id()));
        let status = Command::new(venv_python())
            .arg(workspace_root().join("tests/python/make_tiny_model.py"))
            .arg(&dir)
            .status()
            .expect("running make_tiny_model.py");
        assert!(status.success(), "make_tiny_model.py failed");
        dir
    })
}

/// A crate built for wasm32-wasip2 by `cargo xtask fixtures` / `cargo xtask build`.
pub fn wasm_artifact(crate_name: &str) -> PathBuf {
    let file = format!("{}.wasm", crate_name.replace('-', "_"));
    must_exist(target_dir().join("wasm32-wasip2/debug").join(file))
}

/// A WASI command (bin crate) built for wasm32-wasip2.
pub fn wasm_command(crate_name: &str) -> PathBuf {
    must_exist(
        target_dir()
            .join("wasm32-wasip2/debug")
            .join(format!("{crate_name}.wasm")),
    )
}

/// A crate built natively as a cdylib.
pub fn native_artifact(crate_name: &str) -> PathBuf {
    let file = format!("lib{}.so", crate_name.replace('-', "_"));
    must_exist(target_dir().join("debug").join(file))
}

/// Compile `tests/fixtures/c/<source>` into a shared library in `out_dir`.
pub fn build_c_plugin(source: &str, defines: &[&str], out_dir: &Path) -> PathBuf {
    let root = workspace_root();
    let out = out_dir.join(format!(
        "lib{}{}.so",
        source.trim_end_matches(".c"),
        defines.join("").replace(['=', '-'], "_")
    ));
    let mut cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cc.args(["-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("sdk/include"))
        .arg(root.join("tests/fixtures/c").join(source))
        .arg("-o")
        .arg(&out);
    for define in defines {
        cc.arg(format!("-D{define}"));
    }
    let status = cc
        .status()
        .expect("a C compiler (`cc`) is needed for the C ABI tests");
    assert!(status.success(), "compiling {source} failed");
    out
}

/// A loader with its own, empty compiled-component cache.
pub fn fresh_loader(cache: &Path) -> llem::PluginLoader {
    llem::PluginLoader::new(Some(cache.to_owned()))
}

/// A loader sharing one compiled-component cache across tests (compiling a
/// debug component takes seconds; the cache itself is tested separately).
pub fn loader() -> llem::PluginLoader {
    llem::PluginLoader::new(Some(target_dir().join("llem-test-cache")))
}

/// The `llem` binary built by `cargo xtask build` (debug).
pub fn llem_bin() -> PathBuf {
    must_exist(
        target_dir()
            .join("debug")
            .join(format!("llem{}", std::env::consts::EXE_SUFFIX)),
    )
}

/// `llem` with a plugin path, a shared compiled-component cache and no colour.
pub fn llem(plugin_dir: &Path) -> Command {
    let mut command = Command::new(llem_bin());
    command
        .env("LLEM_PLUGIN_PATH", plugin_dir)
        .env("LLEM_CACHE_DIR", target_dir().join("llem-test-cache"))
        .env("NO_COLOR", "1")
        .env_remove("LLEM_LOG");
    command
}

/// The one run directory `llem run` made under `experiment_dir`
/// (`<output>/<experiment name>`), and its result.json.
pub fn only_run(experiment_dir: &Path) -> (PathBuf, serde_json::Value) {
    let run = std::fs::read_dir(experiment_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", experiment_dir.display()))
        .next()
        .expect("a run directory")
        .expect("a readable run directory")
        .path();
    let text = std::fs::read_to_string(run.join("result.json")).expect("result.json");
    (
        run,
        serde_json::from_str(&text).expect("result.json is JSON"),
    )
}

/// A directory holding copies of the given plugin files.
pub fn plugin_dir(files: &[PathBuf]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for file in files {
        let name = file.file_name().expect("plugin file name");
        std::fs::copy(file, dir.path().join(name)).expect("copy plugin");
    }
    dir
}

/// Run to completion; (exit code, stdout, stderr).
pub fn output(command: &mut Command) -> (i32, String, String) {
    let out = command.output().expect("llem runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Compile `tests/fixtures/c/<source>` into a plain shared library (a fake
/// vendor library such as libnvidia-ml.so) named `file_name` in `out_dir`.
pub fn build_c_library(source: &str, file_name: &str, out_dir: &Path) -> PathBuf {
    let root = workspace_root();
    let out = out_dir.join(file_name);
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("tests/fixtures/c"))
        .arg(root.join("tests/fixtures/c").join(source))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("a C compiler (`cc`) is needed for the fake vendor libraries");
    assert!(status.success(), "compiling {source} failed");
    out
}

/// Check `doc` against the subset of JSON Schema that docs/result.schema.json
/// uses (`type`, `const`, `enum`, `required`, `properties`, `items`,
/// `additionalProperties` as a schema, `minimum`); returns every violation
/// with its path. Small on purpose: the schema is llem's own, and this keeps
/// a validator crate out of the build.
pub fn schema_violations(schema: &serde_json::Value, doc: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    check_schema(schema, doc, "$", &mut out);
    out
}

fn type_matches(name: &str, v: &serde_json::Value) -> bool {
    match name {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

fn check_schema(
    schema: &serde_json::Value,
    v: &serde_json::Value,
    path: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    if let Some(t) = schema.get("type") {
        let ok = match t {
            Value::String(name) => type_matches(name, v),
            Value::Array(names) => names
                .iter()
                .filter_map(Value::as_str)
                .any(|n| type_matches(n, v)),
            _ => true,
        };
        if !ok {
            out.push(format!("{path}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        out.push(format!("{path}: {v} is not {c}"));
    }
    if let Some(Value::Array(choices)) = schema.get("enum")
        && !choices.contains(v)
    {
        out.push(format!("{path}: {v} is not one of {choices:?}"));
    }
    if let (Some(min), Some(x)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64())
        && x < min
    {
        out.push(format!("{path}: {x} < minimum {min}"));
    }
    if let Value::Object(map) = v {
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(key) {
                    out.push(format!("{path}: missing required `{key}`"));
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, value) in map {
            let sub = format!("{path}.{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(s) => check_schema(s, value, &sub, out),
                None => {
                    if let Some(extra) = schema.get("additionalProperties")
                        && extra.is_object()
                    {
                        check_schema(extra, value, &sub, out);
                    }
                }
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (v, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check_schema(s, item, &format!("{path}[{i}]"), out);
        }
    }
}

/// The shape of a result document: every key path, arrays as `[]` (the
/// elements of `phases` and `energy.devices` described by the union of their
/// keys, other arrays not entered), map-like objects (`environment.devices`,
/// `backend.plan.env`) as `*`.
pub fn key_paths(doc: &serde_json::Value) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    walk_keys(doc, "", &mut out);
    out.into_iter().collect()
}

fn walk_keys(v: &serde_json::Value, path: &str, out: &mut std::collections::BTreeSet<String>) {
    use serde_json::Value;
    const MAPS: [&str; 2] = ["environment.devices", "backend.plan.env"];
    const DESCEND: [&str; 2] = ["phases", "energy.devices"];
    match v {
        Value::Object(map) => {
            if MAPS.contains(&path) {
                out.insert(format!("{path}.*"));
                return;
            }
            for (key, value) in map {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                out.insert(sub.clone());
                walk_keys(value, &sub, out);
            }
        }
        Value::Array(items) if DESCEND.contains(&path) => {
            for item in items {
                walk_keys(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// The fields of a request record a sink receives (`sink-stream`'s
/// `request-record`), as named in requests.jsonl.
pub const REQUEST_FIELDS: [&str; 12] = [
    "index",
    "prompt_id",
    "phase",
    "send_ns",
    "first_token_ns",
    "chunk_ns",
    "end_ns",
    "input_tokens",
    "output_tokens",
    "tokens_from_usage",
    "success",
    "error",
];
