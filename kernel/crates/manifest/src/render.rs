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

/// A JSON value as a TOML literal (`"runs"`, `10.0`, `["a", "b"]`, `{ k = 1 }`).
fn literal(value: &Value) -> String {
    match toml::Value::try_from(value) {
        Ok(v) => v.to_string(),
        // Only null (no TOML form) gets here; a JSON literal is the honest fallback.
        Err(_) => value.to_string(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
