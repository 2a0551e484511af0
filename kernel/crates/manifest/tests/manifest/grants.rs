//! Grants come only from the user's words: a plugin's own `path` defaults grant
//! nothing (unless the plugin ships with llem), a file grants that file alone,
//! a directory that directory, and every grant says which key made it.

use std::path::{Path, PathBuf};

use llem_manifest::{Grant, GrantAccess, GrantedBy, Plan};

use crate::common::{errors, plan, raw, render, resolve_raw};

/// A directory holding `data/prompts.json`, a sibling secret, and `out/`.
struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("llem-grants-{tag}-{}", std::process::id()));
        let made = std::fs::create_dir_all(dir.join("data"))
            .and_then(|()| std::fs::create_dir_all(dir.join("out")))
            .and_then(|()| std::fs::write(dir.join("data/prompts.json"), "[]"))
            .and_then(|()| std::fs::write(dir.join("data/id_rsa"), "secret"));
        assert!(made.is_ok(), "{made:?}");
        Tree(dir)
    }

    fn path(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn grant(instance: &str, access: GrantAccess, target: &str, key: &str, by: GrantedBy) -> Grant {
    Grant {
        instance: instance.to_owned(),
        access,
        target: target.to_owned(),
        key: key.to_owned(),
        by,
    }
}

fn only_plugin(plan: &Plan) -> &llem_manifest::PluginPlan {
    assert_eq!(plan.plugins.len(), 1);
    &plan.plugins[0]
}

#[test]
fn a_third_party_default_grants_nothing_and_a_file_grants_itself_alone() {
    let tree = Tree::new("file");
    let file = tree.path("data/prompts.json");
    // The plugin declares `root` with default "/" and never gets it.
    let plan = plan(&format!("[plugins.files]\nfile = \"{file}\"\n"));
    let p = only_plugin(&plan);
    assert_eq!(
        p.config["root"], "/",
        "the plugin is still told its default"
    );
    assert_eq!(p.sandbox.read_dirs, [PathBuf::from(&file)]);
    assert_eq!(
        p.grants,
        [grant(
            "files",
            GrantAccess::ReadFile,
            &file,
            "plugins.files.file",
            GrantedBy::User
        )]
    );
    assert_eq!(
        p.grants[0].to_string(),
        format!("files may read the file {file} (plugins.files.file)")
    );
}

#[test]
fn set_on_the_command_line_is_the_users_word_too() {
    let tree = Tree::new("set");
    let dir = tree.path("data");
    let mut raw = raw("[plugins.files]\nfile = \"x\"\n");
    if let Err(e) = raw.apply_set(&format!("files.file=\"{dir}/./prompts.json\"")) {
        panic!("{e}");
    }
    if let Err(e) = raw.apply_set(&format!("files.root=\"{dir}\"")) {
        panic!("{e}");
    }
    let plan = match resolve_raw(&raw) {
        Ok(plan) => plan,
        Err(e) => panic!("{}", render(&e)),
    };
    let p = only_plugin(&plan);
    let file = format!("{dir}/prompts.json");
    // The value the plugin sees is the normalised path its grant opens.
    assert_eq!(p.config["file"], file.as_str());
    assert_eq!(
        p.grants,
        [
            grant(
                "files",
                GrantAccess::ReadFile,
                &file,
                "plugins.files.file",
                GrantedBy::User
            ),
            grant(
                "files",
                GrantAccess::ReadDir,
                &dir,
                "plugins.files.root",
                GrantedBy::User
            ),
        ]
    );
}

#[test]
fn a_plugin_shipped_with_llem_has_its_defaults_granted_and_labelled() {
    let tree = Tree::new("shipped");
    let file = tree.path("data/prompts.json");
    let plan = plan(&format!("[plugins.shipped]\nfile = \"{file}\"\n"));
    let p = only_plugin(&plan);
    assert_eq!(
        p.grants[1],
        grant(
            "shipped",
            GrantAccess::ReadDir,
            "/",
            "plugins.shipped.root",
            GrantedBy::ShippedDefault
        )
    );
    assert!(
        p.grants[1]
            .to_string()
            .ends_with("(default of plugins.shipped.root, a plugin shipped with llem)"),
        "{}",
        p.grants[1]
    );
    // An unset (null) default grants nothing, shipped or not.
    assert_eq!(p.grants.len(), 2, "{:?}", p.grants);
}

#[test]
fn a_sink_default_grants_no_write_and_a_written_file_grants_that_file() {
    let tree = Tree::new("sink");
    let p = plan("[plugins.out]\n");
    let sink = only_plugin(&p);
    assert_eq!(sink.sandbox.write_dir, None, "default `/` granted nothing");
    assert!(sink.grants.is_empty(), "{:?}", sink.grants);

    let file = tree.path("out/results.csv");
    let p = plan(&format!("[plugins.out]\nfile = \"{file}\"\n"));
    let sink = only_plugin(&p);
    assert_eq!(sink.sandbox.write_dir.as_deref(), Some(Path::new(&file)));
    assert_eq!(
        sink.grants,
        [grant(
            "out",
            GrantAccess::WriteFile,
            &file,
            "plugins.out.file",
            GrantedBy::User
        )]
    );
    let dir = tree.path("out");
    let p = plan(&format!("[plugins.out]\nfile = \"{dir}\"\n"));
    assert_eq!(only_plugin(&p).grants[0].access, GrantAccess::WriteDir);
}

#[test]
fn sandbox_lists_grant_files_and_directories_and_variables() {
    let tree = Tree::new("lists");
    let file = tree.path("data/prompts.json");
    let dir = tree.path("out");
    let p = plan(&format!(
        "[plugins.files]\nfile = \"{file}\"\n[plugins.files.sandbox]\nread = [\"{dir}\"]\nenv = [\"HF_TOKEN\"]\n"
    ));
    let p = only_plugin(&p);
    assert_eq!(
        p.grants,
        [
            grant(
                "files",
                GrantAccess::ReadDir,
                &dir,
                "plugins.files.sandbox.read",
                GrantedBy::User
            ),
            grant(
                "files",
                GrantAccess::Env,
                "HF_TOKEN",
                "plugins.files.sandbox.env",
                GrantedBy::User
            ),
            grant(
                "files",
                GrantAccess::ReadFile,
                &file,
                "plugins.files.file",
                GrantedBy::User
            ),
        ]
    );
}

#[test]
fn a_grant_of_a_missing_path_fails_validation_at_its_position() {
    let tree = Tree::new("missing");
    let file = tree.path("data/prompts.json");
    let missing = tree.path("nope");
    let errors = errors(&format!(
        "[plugins.files]\nfile = \"{file}\"\n[plugins.files.sandbox]\nread = [\"/\", \"{missing}\"]\nwrite = \"{missing}\"\n"
    ));
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(
        text[0].starts_with(&format!(
            "experiment.toml:4:14: `plugins.files.sandbox.read` grants {missing}, which does not exist"
        )),
        "{text:?}"
    );
    assert!(
        text[1].starts_with(&format!(
            "experiment.toml:5:9: `plugins.files.sandbox.write` grants {missing}, which does not exist"
        )),
        "{text:?}"
    );
}

#[test]
fn a_sandbox_table_on_a_native_plugin_is_an_error() {
    let msg =
        crate::common::only_error("[plugins.native]\n[plugins.native.sandbox]\nmemory_mib = 64\n");
    assert!(
        msg.starts_with("experiment.toml:2:1: [plugins.native.sandbox] cannot apply: `energy-native` (/usr/lib/llem/plugins/native.so) is a native plugin"),
        "{msg}"
    );
    assert!(
        msg.contains("help: remove the [plugins.native.sandbox] table"),
        "{msg}"
    );
    // Without the table a native plugin resolves, with no grants and no sandbox in the resolved file.
    let p = plan("[plugins.native]\n");
    assert!(!p.plugins[0].sandboxed && p.plugins[0].grants.is_empty());
    let text = p.to_toml_string().unwrap_or_default();
    assert!(!text.contains("[plugins.native.sandbox]"), "{text}");
}

#[test]
fn memory_mib_is_bounded_by_what_wasm_can_address() {
    let msg = crate::common::only_error("[plugins.rapl.sandbox]\nmemory_mib = 5000\n");
    assert_eq!(
        msg,
        "experiment.toml:2:14: `plugins.rapl.sandbox.memory_mib` must be between 1 and 4096, found 5000"
    );
    assert_eq!(
        plan("[plugins.rapl.sandbox]\nmemory_mib = 4096\n").plugins[0]
            .sandbox
            .memory_mib,
        4096
    );
}

#[test]
fn the_resolved_manifest_lists_grants_and_does_not_launder_defaults() {
    let tree = Tree::new("resolved");
    let file = tree.path("data/prompts.json");
    let first = plan(&format!("[plugins.files]\nfile = \"{file}\"\n"));
    let text = match first.to_toml_string() {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    // The default `root = "/"` is written out, yet re-running the file grants no more.
    assert!(text.contains("root = \"/\""), "{text}");
    assert!(text.contains("grant_paths = false"), "{text}");
    assert!(
        text.contains(&format!(
            "#   files may read the file {file} (plugins.files.file)"
        )),
        "{text}"
    );
    let second = plan(&text);
    let p = only_plugin(&second);
    assert_eq!(p.sandbox.read_dirs, [PathBuf::from(&file)]);
    assert_eq!(
        p.grants,
        [grant(
            "files",
            GrantAccess::ReadFile,
            &file,
            "plugins.files.sandbox.read",
            GrantedBy::User
        )]
    );
}
