//! The SDK vendored into `llem plugins new` crates, so that a plugin builds
//! without llem's source tree and without a published `llem-sdk`: the SDK's
//! sources and the WIT files it binds to, as this llem was built with them,
//! written under `<crate>/vendor/`. A test checks that this list holds every
//! file of `sdk/src` and `wit/`.

use std::path::Path;

/// (path under `vendor/`, contents).
pub const FILES: &[(&str, &str)] = &[
    (
        "llem-sdk/src/abi.rs",
        include_str!("../../../../sdk/src/abi.rs"),
    ),
    (
        "llem-sdk/src/config.rs",
        include_str!("../../../../sdk/src/config.rs"),
    ),
    (
        "llem-sdk/src/host.rs",
        include_str!("../../../../sdk/src/host.rs"),
    ),
    (
        "llem-sdk/src/lib.rs",
        include_str!("../../../../sdk/src/lib.rs"),
    ),
    (
        "llem-sdk/src/native.rs",
        include_str!("../../../../sdk/src/native.rs"),
    ),
    (
        "llem-sdk/src/types.rs",
        include_str!("../../../../sdk/src/types.rs"),
    ),
    (
        "llem-sdk/src/wasm.rs",
        include_str!("../../../../sdk/src/wasm.rs"),
    ),
    (
        "wit/llem-plugin-0.1.0/backend.wit",
        include_str!("../../../../wit/llem-plugin-0.1.0/backend.wit"),
    ),
    (
        "wit/llem-plugin-0.1.0/dataset.wit",
        include_str!("../../../../wit/llem-plugin-0.1.0/dataset.wit"),
    ),
    (
        "wit/llem-plugin-0.1.0/energy.wit",
        include_str!("../../../../wit/llem-plugin-0.1.0/energy.wit"),
    ),
    (
        "wit/llem-plugin-0.1.0/sink.wit",
        include_str!("../../../../wit/llem-plugin-0.1.0/sink.wit"),
    ),
    (
        "wit/llem-plugin-0.1.0/types.wit",
        include_str!("../../../../wit/llem-plugin-0.1.0/types.wit"),
    ),
    (
        "wit/llem-plugin-0.1.0/worlds.wit",
        include_str!("../../../../wit/llem-plugin-0.1.0/worlds.wit"),
    ),
    (
        "wit/llem-plugin-ext-0.1.0/energy-read-flat.wit",
        include_str!("../../../../wit/llem-plugin-ext-0.1.0/energy-read-flat.wit"),
    ),
    (
        "wit/llem-plugin-ext-0.1.0/energy-topology.wit",
        include_str!("../../../../wit/llem-plugin-ext-0.1.0/energy-topology.wit"),
    ),
    (
        "wit/llem-plugin-ext-0.1.0/sink-stream.wit",
        include_str!("../../../../wit/llem-plugin-ext-0.1.0/sink-stream.wit"),
    ),
];

/// `vendor/llem-sdk/Cargo.toml`: the SDK's manifest without the workspace's
/// inheritance, with the same dependency versions.
const CARGO_TOML: &str = r#"[package]
name = "llem-sdk"
version = "{version}"
edition = "2024"
publish = false
description = "llem's plugin SDK, vendored by `llem plugins new`"

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"

[target.'cfg(target_family = "wasm")'.dependencies]
wit-bindgen = { version = "0.61", default-features = false, features = ["macros", "realloc", "std"] }
wasip2 = "1"
"#;

/// Write the SDK under `dir/vendor/`; returns the SDK crate's directory.
pub fn write(dir: &Path) -> Result<std::path::PathBuf, String> {
    let vendor = dir.join("vendor");
    for (path, text) in FILES {
        let to = vendor.join(path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&to, text).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    }
    let sdk = vendor.join("llem-sdk");
    let manifest = CARGO_TOML.replace("{version}", env!("CARGO_PKG_VERSION"));
    std::fs::write(sdk.join("Cargo.toml"), manifest)
        .map_err(|e| format!("cannot write {}: {e}", sdk.join("Cargo.toml").display()))?;
    Ok(sdk)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every file of sdk/src and wit/ is vendored (a new SDK file must be added here).
    #[test]
    fn every_sdk_and_wit_file_is_vendored() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(3)
            .expect("workspace root");
        let mut on_disk = Vec::new();
        for (dir, prefix) in [("sdk/src", "llem-sdk/src"), ("wit", "wit")] {
            let mut stack = vec![root.join(dir)];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d)
                    .expect("readable")
                    .map(|e| e.expect("entry"))
                {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        let rel = p.strip_prefix(root.join(dir)).expect("under dir");
                        on_disk.push(format!("{prefix}/{}", rel.display()));
                    }
                }
            }
        }
        on_disk.sort();
        let mut vendored: Vec<String> = super::FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
        vendored.sort();
        assert_eq!(on_disk, vendored);
    }

    /// Every dependency of sdk/Cargo.toml (per target) is in the vendored
    /// manifest: a dependency added to the SDK alone breaks every template.
    #[test]
    fn the_vendored_manifest_has_every_sdk_dependency() {
        fn deps(manifest: &toml::Table) -> Vec<String> {
            let mut names: Vec<String> = Vec::new();
            let mut add = |table: Option<&toml::Value>, scope: &str| {
                if let Some(t) = table.and_then(toml::Value::as_table) {
                    names.extend(t.keys().map(|k| format!("{scope}{k}")));
                }
            };
            add(manifest.get("dependencies"), "");
            if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
                for (cfg, t) in targets {
                    add(t.get("dependencies"), &format!("{cfg}: "));
                }
            }
            names.sort();
            names
        }
        let sdk: toml::Table =
            toml::from_str(include_str!("../../../../sdk/Cargo.toml")).expect("sdk manifest");
        let vendored: toml::Table = toml::from_str(super::CARGO_TOML).expect("vendored manifest");
        assert_eq!(deps(&sdk), deps(&vendored));
    }
}
