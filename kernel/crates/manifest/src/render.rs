//! `llem config default`: a manifest that documents itself.
//!
//! Everything comes from the key tables in [`crate::keys`] and the plugins'
//! [`OptionSpec`]s, so the text cannot drift from what `resolve` accepts.

use std::fmt::Write as _;

use llem_sdk::{OptionSpec, OptionType, PluginInfo};
use serde_json::Value;

use crate::keys::{KeySpec, PLUGINS_TABLE, RESERVED_PLUGIN_KEYS, SANDBOX, SECTIONS};
use crate::spans::join_path;

/// The default manifest, with each plugin's section commented out.
///
/// `plugins` are `(short name, info)` pairs, e.g. `("rapl", <energy-rapl's info>)`.
/// Uncommenting a plugin's block (its `# [plugins.…]` line and the `# key = …`
/// lines under it) gives a table that resolves; required options get a
/// placeholder of the right type to replace.
pub fn render_default(plugins: &[(String, PluginInfo)]) -> String {
    let mut out = String::new();
    out.push_str(
        "# llem manifest, written by `llem config default`.\n\
         # Every key is shown with its default. Keys without a default are commented out.\n\
         # Relative paths are relative to this file's directory.\n",
    );
    for section in SECTIONS {
        let _ = write!(out, "\n# {}\n[{}]\n", section.doc, section.name);
        for key in (section.keys)() {
            render_key(&mut out, &key);
        }
    }

    let _ = write!(
        out,
        "\n# ---------------------------------------------------------------- plugins\n\
         # One [{PLUGINS_TABLE}.<instance>] table per plugin instance. The instance name is also the\n\
         # plugin's name (short `rapl` or full `energy-rapl`) unless `plugin` names it.\n\
         # Every plugin table reserves these keys ({}):\n\
         #   plugin = \"energy-rapl\"  # which plugin, when the instance name differs\n\
         #   path = \"plugins/x.wasm\"  # load the plugin from this file\n\
         #\n\
         # {}\n\
         #   [{PLUGINS_TABLE}.<instance>.{}]\n",
        RESERVED_PLUGIN_KEYS.join(", "),
        SANDBOX.doc,
        SANDBOX.name,
    );
    for key in (SANDBOX.keys)() {
        let _ = writeln!(
            out,
            "#   {}  # {}",
            assignment(&key),
            one_line(&key.option.doc)
        );
    }

    for (short, info) in plugins {
        let _ = write!(
            out,
            "\n# {} {} ({}): {}\n# [{}]\n",
            info.name,
            info.version,
            info.kind,
            one_line(&info.description),
            join_path(PLUGINS_TABLE, short)
        );
        for option in &info.options {
            render_plugin_option(&mut out, option);
        }
    }
    out
}

/// A key of an llem table: doc comment, then `key = default` (commented out
/// when there is no default, with its example or a typed placeholder).
fn render_key(out: &mut String, key: &KeySpec) {
    let _ = writeln!(out, "# {}", one_line(&key.option.doc));
    let _ = writeln!(out, "{}", assignment(key));
}

/// `key = default`, or `# key = example` when the key has no default.
fn assignment(key: &KeySpec) -> String {
    match &key.option.default {
        Some(default) => format!("{} = {}", key.name(), literal(default)),
        None => {
            let example = key
                .example
                .clone()
                .unwrap_or_else(|| placeholder(&key.option));
            format!("# {} = {}", key.name(), literal(&example))
        }
    }
}

/// `# key = default  # doc`: one line per option inside a commented-out plugin block.
fn render_plugin_option(out: &mut String, option: &OptionSpec) {
    let doc = one_line(&option.doc);
    let _ = match &option.default {
        Some(Value::Null) => writeln!(
            out,
            "# # {} = {}  # optional, unset by default: {doc}",
            option.name,
            literal(&placeholder(option))
        ),
        Some(default) => writeln!(out, "# {} = {}  # {doc}", option.name, literal(default)),
        None => writeln!(
            out,
            "# {} = {}  # REQUIRED ({}): {doc}",
            option.name,
            literal(&placeholder(option)),
            option.ty.as_str()
        ),
    };
}

/// A value of the right type to stand in for a missing one.
fn placeholder(option: &OptionSpec) -> Value {
    match option.ty {
        OptionType::String | OptionType::Path | OptionType::Any => {
            Value::String(option.choices.first().cloned().unwrap_or_default())
        }
        OptionType::Integer => Value::from(0),
        OptionType::Float => Value::from(0.0),
        OptionType::Boolean => Value::Bool(false),
        OptionType::StringList | OptionType::IntegerList => Value::Array(Vec::new()),
        OptionType::Table => Value::Object(serde_json::Map::new()),
    }
}

/// A JSON value as a one-line TOML literal (`"runs"`, `10.0`, `["a", "b"]`,
/// `{ k = 1 }`). One line always: defaults are printed after `# ` in comments,
/// and a multi-line string literal would spill out of its comment. A JSON
/// string escape (`\n`, `\"`, `\\`, `\u00XX`) is also a valid TOML basic string.
fn literal(value: &Value) -> String {
    match value {
        Value::String(_) => value.to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) if map.is_empty() => "{}".to_owned(),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{} = {}", key_literal(k), literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => match toml::Value::try_from(other) {
            Ok(v) => v.to_string(),
            // Only null (no TOML form) gets here; a JSON literal is the honest fallback.
            Err(_) => other.to_string(),
        },
    }
}

/// A bare key when TOML allows one, else a quoted one.
fn key_literal(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod literal_tests {
    use super::literal;
    use serde_json::json;

    #[test]
    fn literals_stay_on_one_line_and_parse_back() {
        let value = json!({"template": "{instruction}\n\n{input}", "n": 3, "list": ["a\"b", 1.5], "odd key": true});
        let text = literal(&value);
        assert!(!text.contains('\n'), "{text}");
        let parsed: toml::Table = format!("x = {text}").parse().unwrap();
        assert_eq!(
            parsed["x"]["template"].as_str(),
            Some("{instruction}\n\n{input}")
        );
        assert_eq!(parsed["x"]["list"][0].as_str(), Some("a\"b"));
        assert_eq!(parsed["x"]["odd key"].as_bool(), Some(true));
    }
}
