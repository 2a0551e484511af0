//! Positions: TOML syntax errors and the exact line:column of checked keys and values.

use llem_manifest::{ManifestSource, parse};

use crate::common::{only_error, source};

#[test]
fn toml_syntax_error_has_its_position() {
    let text = "[experiment]\nname = \"a\"\ncycles = = 3\n";
    let err = match parse(&source(text)) {
        Ok(_) => panic!("syntax error not reported"),
        Err(e) => e,
    };
    assert_eq!(err.origin, "experiment.toml");
    assert_eq!((err.line, err.column), (Some(3), Some(10)));
    assert!(err.message.starts_with("invalid TOML: "), "{}", err.message);
    assert!(
        err.to_string()
            .starts_with("experiment.toml:3:10: invalid TOML: ")
    );
}

#[test]
fn duplicate_key_is_a_syntax_error_at_the_second_one() {
    let text = "[experiment]\nseed = 1\nseed = 2\n";
    let err = parse(&source(text)).err().map(|e| (e.line, e.column));
    assert_eq!(err, Some((Some(3), Some(1))));
}

#[test]
fn unknown_key_points_at_the_key_and_suggests() {
    let text = r#"[experiment]
model = "m"

[plugins.vllm]
served_model_name = "x"
max_num_seq = 64
"#;
    assert_eq!(
        only_error(text),
        "experiment.toml:6:1: unknown key `max_num_seq` in [plugins.vllm]\n  help: did you mean `max_num_seqs`?"
    );
}

#[test]
fn wrong_type_points_at_the_value_with_its_key_path() {
    let text = "[experiment]\nname = \"x\"\nseed = 1\ncycles = \"three\"\n";
    let errors = crate::common::errors(text);
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(e.key_path, "experiment.cycles");
    assert_eq!((e.line, e.column), (Some(4), Some(10)));
    assert_eq!(
        e.to_string(),
        "experiment.toml:4:10: `experiment.cycles` must be an integer, found a string (\"three\")"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let msg = only_error("[experiment]\nname = \"é\"\n\"clé\" = true\n");
    assert!(
        msg.starts_with("experiment.toml:3:1: unknown key `clé` in [experiment]"),
        "{msg}"
    );
    // `é` is two bytes: the bad value sits at byte column 49 but character column 48.
    let text = "[plugins]\nrapl = { sandbox = { env = [\"é\"], memory_mib = \"x\" } }\n";
    let msg = only_error(text);
    assert!(
        msg.starts_with("experiment.toml:2:48: `plugins.rapl.sandbox.memory_mib`"),
        "{msg}"
    );
}

#[test]
fn empty_manifest_parses() {
    let src = ManifestSource::empty("<command line>", std::path::PathBuf::from("."));
    let raw = parse(&src).map_err(|e| e.to_string());
    assert!(raw.is_ok_and(|r| r.root.entries.is_empty()));
}
