//! `llem plugins new`: a plugin crate that builds as it is, both as a WASM
//! component and as a native library, from one source file.

use llem_sdk::PluginKind;
use std::path::{Path, PathBuf};

const CARGO_TOML: &str = include_str!("plugin_templates/Cargo.toml.in");
const ENERGY: &str = include_str!("plugin_templates/energy.rs.in");
const BACKEND: &str = include_str!("plugin_templates/backend.rs.in");
const DATASET: &str = include_str!("plugin_templates/dataset.rs.in");
const SINK: &str = include_str!("plugin_templates/sink.rs.in");

/// The SDK in the source tree this llem was built from, if it is still there.
fn source_tree_sdk() -> Option<PathBuf> {
    // kernel/crates/cli -> the workspace root.
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(3)?
        .join("sdk");
    sdk.join("Cargo.toml").exists().then_some(sdk)
}

fn camel(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Create the crate; returns its directory.
pub fn new_plugin(
    kind: PluginKind,
    name: &str,
    dir: Option<&Path>,
    sdk_path: Option<&Path>,
    vendor_sdk: bool,
) -> Result<PathBuf, String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "plugin name `{name}` must be ASCII letters, digits, `-` or `_`"
        ));
    }
    let prefix = format!("{}-", kind.as_str());
    let full = if name.starts_with(&prefix) {
        name.to_owned()
    } else {
        format!("{prefix}{name}")
    };
    let dir = dir
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(&full));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(format!(
            "{} already exists and is not empty; choose another --dir",
            dir.display()
        ));
    }
    // `--sdk-path`, else this llem's source tree, else (or with
    // `--vendor-sdk`) the SDK vendored into the crate: it builds anywhere.
    let chosen = match sdk_path {
        Some(path) => Some(path.to_owned()),
        None if vendor_sdk => None,
        None => source_tree_sdk(),
    };
    let sdk_dependency = match chosen {
        Some(path) => {
            let path = path
                .canonicalize()
                .map_err(|e| format!("--sdk-path {}: {e}", path.display()))?;
            format!(
                "{{ path = {} }}",
                toml::Value::String(path.display().to_string())
            )
        }
        None => "{ path = \"vendor/llem-sdk\" }".to_owned(),
    };
    let source = match kind {
        PluginKind::Energy => ENERGY,
        PluginKind::Backend => BACKEND,
        PluginKind::Dataset => DATASET,
        PluginKind::Sink => SINK,
    };
    let fill = |text: &str| {
        text.replace("{{name}}", &full)
            .replace("{{Type}}", &camel(&full))
            .replace("{{sdk}}", &sdk_dependency)
    };
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir.join("src"))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write(dir.join("Cargo.toml"), fill(CARGO_TOML))?;
    write(dir.join("src/lib.rs"), fill(source))?;
    write(dir.join(".gitignore"), "/target\n".to_owned())?;
    if sdk_dependency.contains("vendor/llem-sdk") {
        crate::sdk_vendor::write(&dir)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_become_type_names() {
        assert_eq!(super::camel("energy-my_meter"), "EnergyMyMeter");
    }
}
