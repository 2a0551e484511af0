//! A fixed plugin catalog standing in for the kernel's plugin loader.

use std::path::{Path, PathBuf};

use llem_manifest::{
    CatalogEntry, LookupError, ManifestError, ManifestSource, Plan, PluginCatalog, RawManifest,
};
use llem_sdk::{OptionSpec, OptionType, PluginInfo, PluginKind};
use serde_json::json;

pub const DIR: &str = "/work/exp";

pub fn info(name: &str, kind: PluginKind, options: Vec<OptionSpec>) -> PluginInfo {
    PluginInfo {
        name: name.to_owned(),
        kind,
        version: "0.1.0".to_owned(),
        description: format!("fake {name}"),
        options,
    }
}

/// Short name and info of every well-formed fake plugin.
pub fn plugins() -> Vec<(String, PluginInfo)> {
    use OptionType::*;
    vec![
        (
            "nvml".to_owned(),
            info(
                "energy-nvml",
                PluginKind::Energy,
                vec![
                    OptionSpec::with_default(
                        "devices",
                        IntegerList,
                        json!([]),
                        "GPU indices; empty = all",
                    ),
                    OptionSpec::with_default(
                        "telemetry",
                        Boolean,
                        true,
                        "Also read clocks and temperature",
                    ),
                ],
            ),
        ),
        (
            "rapl".to_owned(),
            info(
                "energy-rapl",
                PluginKind::Energy,
                vec![
                    OptionSpec::with_default(
                        "domains",
                        StringList,
                        json!(["package", "dram"]),
                        "RAPL domains",
                    )
                    .choices(&["package", "dram", "core", "uncore", "psys"]),
                ],
            ),
        ),
        (
            "vllm".to_owned(),
            info(
                "backend-vllm",
                PluginKind::Backend,
                vec![
                    OptionSpec::required("served_model_name", String, "Name the server answers to"),
                    OptionSpec::with_default("mode", String, "server", "Engine mode")
                        .choices(&["server", "offline"]),
                    OptionSpec::with_default("dtype", String, "auto", "Weights dtype")
                        .choices(&["auto", "bfloat16", "float16"]),
                    OptionSpec::with_default(
                        "max_num_seqs",
                        Integer,
                        256,
                        "Max concurrent sequences",
                    ),
                    OptionSpec::with_default(
                        "gpu_memory_utilization",
                        Float,
                        0.9,
                        "Fraction of GPU memory",
                    ),
                    OptionSpec::with_default(
                        "extra_args",
                        Table,
                        json!({}),
                        "More engine arguments",
                    ),
                    OptionSpec::with_default(
                        "quantization",
                        Any,
                        serde_json::Value::Null,
                        "Quantization method",
                    ),
                ],
            ),
        ),
    ]
}

/// Plugins with `path` options, for the grant rules: a third-party dataset and
/// sink whose defaults try to grant themselves `/`, the same dataset shipped
/// with llem, and a native plugin.
fn grant_plugins() -> Vec<(String, PluginInfo)> {
    use OptionType::*;
    let dataset = |name: &str| {
        info(
            name,
            PluginKind::Dataset,
            vec![
                OptionSpec::required("file", Path, "Prompts file"),
                OptionSpec::with_default("root", Path, "/", "Greedy default"),
                OptionSpec::with_default("tokenizer", Path, serde_json::Value::Null, "Unset"),
            ],
        )
    };
    vec![
        ("files".to_owned(), dataset("dataset-files")),
        ("shipped".to_owned(), dataset("dataset-shipped")),
        (
            "out".to_owned(),
            info(
                "sink-out",
                PluginKind::Sink,
                vec![OptionSpec::with_default(
                    "file",
                    Path,
                    "/",
                    "Where to write",
                )],
            ),
        ),
        (
            "native".to_owned(),
            info("energy-native", PluginKind::Energy, vec![]),
        ),
    ]
}

pub struct FakeCatalog {
    plugins: Vec<(String, PluginInfo)>,
}

impl FakeCatalog {
    pub fn new() -> Self {
        let mut plugins = plugins();
        // A plugin that wrongly declares a reserved key.
        plugins.push((
            "clash".to_owned(),
            info(
                "sink-clash",
                PluginKind::Sink,
                vec![OptionSpec::with_default(
                    "path",
                    OptionType::String,
                    "x",
                    "Output file",
                )],
            ),
        ));
        plugins.extend(grant_plugins());
        FakeCatalog { plugins }
    }
}

impl PluginCatalog for FakeCatalog {
    fn lookup(
        &self,
        name: &str,
        explicit_path: Option<&Path>,
    ) -> Result<CatalogEntry, LookupError> {
        if name == "broken" {
            return Err(LookupError::Broken(
                "wrong ABI version 9 (this llem speaks 1)".to_owned(),
            ));
        }
        let found = self
            .plugins
            .iter()
            .find(|(short, info)| short == name || info.name == name);
        match found {
            Some((short, info)) => {
                // `native*` plugins are shared libraries; `shipped*` ones come with llem.
                let native = short.starts_with("native");
                let ext = if native { "so" } else { "wasm" };
                Ok(CatalogEntry {
                    full_name: info.name.clone(),
                    location: explicit_path.map(Path::to_path_buf).unwrap_or_else(|| {
                        PathBuf::from(format!("/usr/lib/llem/plugins/{short}.{ext}"))
                    }),
                    info: info.clone(),
                    sandboxed: !native,
                    shipped: short.starts_with("shipped"),
                })
            }
            None => {
                let names = self
                    .plugins
                    .iter()
                    .flat_map(|(s, i)| [s.as_str(), i.name.as_str()]);
                let mut available: Vec<String> =
                    self.plugins.iter().map(|(_, i)| i.name.clone()).collect();
                available.sort();
                Err(LookupError::Unknown {
                    suggestions: llem_manifest::suggest(name, names),
                    available,
                })
            }
        }
    }
}

pub fn source(text: &str) -> ManifestSource {
    ManifestSource {
        name: "experiment.toml".to_owned(),
        dir: PathBuf::from(DIR),
        text: text.to_owned(),
    }
}

pub fn raw(text: &str) -> RawManifest {
    match llem_manifest::parse(&source(text)) {
        Ok(raw) => raw.with_command_line_dir(PathBuf::from("/home/me")),
        Err(e) => panic!("unexpected parse error: {e}"),
    }
}

pub fn resolve_raw(raw: &RawManifest) -> Result<Plan, Vec<ManifestError>> {
    llem_manifest::resolve(raw, &FakeCatalog::new())
}

pub fn plan(text: &str) -> Plan {
    match resolve_raw(&raw(text)) {
        Ok(plan) => plan,
        Err(errors) => panic!("unexpected errors:\n{}", render(&errors)),
    }
}

pub fn errors(text: &str) -> Vec<ManifestError> {
    match resolve_raw(&raw(text)) {
        Ok(plan) => panic!("expected errors, got a plan: {plan:?}"),
        Err(errors) => errors,
    }
}

/// The single error of `text`, rendered.
pub fn only_error(text: &str) -> String {
    let errors = errors(text);
    assert_eq!(
        errors.len(),
        1,
        "expected one error, got:\n{}",
        render(&errors)
    );
    errors[0].to_string()
}

pub fn render(errors: &[ManifestError]) -> String {
    errors.iter().map(|e| format!("{e}\n")).collect()
}
