//! Relative paths resolve against the manifest's directory (or, for `--set`, the
//! directory the command was run from).

use std::path::PathBuf;

use crate::common::{plan, raw, render, resolve_raw};

/// A fresh directory holding `subdirs` (grants must name what exists).
fn dir_with(tag: &str, subdirs: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llem-manifest-{tag}-{}", std::process::id()));
    for sub in subdirs {
        let made = std::fs::create_dir_all(dir.join(sub));
        assert!(made.is_ok(), "{made:?}");
    }
    dir
}

#[test]
fn relative_paths_resolve_against_the_manifest_dir() {
    let dir = dir_with("relative", &["data", "scratch"]);
    let source = llem_manifest::ManifestSource {
        name: "experiment.toml".to_owned(),
        dir: dir.clone(),
        text: "[experiment]\noutput_dir = \"out/runs\"\n\
         [plugins.rapl]\npath = \"plugins/rapl.wasm\"\n\
         [plugins.rapl.sandbox]\nread = [\"data\", \"/\"]\nwrite = \"scratch\"\nenv = [\"HF_HOME\"]\nmemory_mib = 512\n"
            .to_owned(),
    };
    let plan = llem_manifest::parse(&source).map(|raw| resolve_raw(&raw));
    let _ = std::fs::remove_dir_all(&dir);
    let plan = match plan {
        Ok(Ok(plan)) => plan,
        other => panic!("{other:?}"),
    };
    assert_eq!(plan.experiment.output_dir, dir.join("out/runs"));
    let rapl = &plan.plugins[0];
    assert_eq!(rapl.location, dir.join("plugins/rapl.wasm"));
    assert_eq!(
        rapl.sandbox.read_dirs,
        [dir.join("data"), PathBuf::from("/")]
    );
    assert_eq!(rapl.sandbox.write_dir, Some(dir.join("scratch")));
    assert_eq!(rapl.sandbox.env, ["HF_HOME"]);
    assert_eq!(rapl.sandbox.memory_mib, 512);
}

#[test]
fn absolute_paths_are_kept() {
    let plan = plan("[experiment]\noutput_dir = \"/data/runs\"\n");
    assert_eq!(plan.experiment.output_dir, PathBuf::from("/data/runs"));
}

#[test]
fn set_paths_resolve_against_the_command_line_dir() {
    let cwd = dir_with("set", &["in"]);
    let mut raw = raw("[plugins.rapl]\n").with_command_line_dir(cwd.clone());
    for a in [
        "experiment.output_dir=results",
        "rapl.sandbox.read=[\"in\"]",
    ] {
        if let Err(e) = raw.apply_set(a) {
            panic!("{e}");
        }
    }
    let plan = match resolve_raw(&raw) {
        Ok(p) => p,
        Err(e) => panic!("{}", render(&e)),
    };
    let _ = std::fs::remove_dir_all(&cwd);
    assert_eq!(plan.experiment.output_dir, cwd.join("results"));
    assert_eq!(plan.plugins[0].sandbox.read_dirs, [cwd.join("in")]);
}

#[test]
fn sandbox_keys_are_checked() {
    let msg = crate::common::only_error("[plugins.rapl.sandbox]\nreed = [\"/sys\"]\n");
    assert_eq!(
        msg,
        "experiment.toml:2:1: unknown key `reed` in [plugins.rapl.sandbox]\n  help: did you mean `read`?"
    );
}

#[test]
fn manifest_read_from_a_file_resolves_against_its_absolute_dir() {
    let dir = std::env::temp_dir().join(format!("llem-manifest-test-{}", std::process::id()));
    let file = dir.join("exp.toml");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&file, "[experiment]\noutput_dir = \"out\"\n"));
    assert!(written.is_ok(), "{written:?}");
    let src = llem_manifest::ManifestSource::from_file(&file).map_err(|e| e.to_string());
    let plan = src.map(|s| llem_manifest::parse(&s).map(|raw| crate::common::resolve_raw(&raw)));
    let _ = std::fs::remove_dir_all(&dir);
    match plan {
        Ok(Ok(Ok(plan))) => assert_eq!(plan.experiment.output_dir, dir.join("out")),
        other => panic!("{other:?}"),
    }
}
