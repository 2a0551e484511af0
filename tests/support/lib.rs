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
