//! JSON Schema (draft 2020-12) of the manifest, for editors (taplo / Even Better
//! TOML) to complete and check keys as people type. Built from the same key
//! tables and plugin options that `resolve` checks against.

use llem_sdk::{OptionSpec, OptionType, PluginInfo};
use serde_json::{Map, Value, json};

use crate::keys::{KeySpec, PLUGINS_TABLE, SANDBOX, SECTIONS};

/// The manifest's schema; `plugins` are `(short name, info)` pairs. Each plugin's
/// table is described under both its short and its full name.
pub fn json_schema(plugins: &[(String, PluginInfo)]) -> Value {
    let mut defs = Map::new();
    defs.insert(
        SANDBOX.name.to_owned(),
        section_schema(SANDBOX.doc, &(SANDBOX.keys)()),
    );
    // An instance whose name is not a plugin's (`plugin = "…"` picks it): only the
    // reserved keys are known, the rest is checked by llem itself.
    defs.insert(
        "plugin-instance".to_owned(),
        json!({
            "type": "object",
            "description": "A plugin instance; `plugin` names the plugin when the table's name differs.",
            "properties": reserved_properties(),
            "additionalProperties": true,
        }),
    );

    let mut plugin_props = Map::new();
    for (short, info) in plugins {
        let def_name = format!("plugin-{}", info.name);
        defs.insert(def_name.clone(), plugin_schema(info));
        let reference = json!({ "$ref": format!("#/$defs/{def_name}") });
        plugin_props.insert(short.clone(), reference.clone());
        plugin_props.insert(info.name.clone(), reference);
    }

    let mut props = Map::new();
    for section in SECTIONS {
        props.insert(
            section.name.to_owned(),
            section_schema(section.doc, &(section.keys)()),
        );
    }
    props.insert(
        PLUGINS_TABLE.to_owned(),
        json!({
            "type": "object",
            "description": "One table per plugin instance; the table's name is the plugin's short or full name unless `plugin` says otherwise.",
            "properties": plugin_props,
            "additionalProperties": { "$ref": "#/$defs/plugin-instance" },
        }),
    );

    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "llem manifest",
        "type": "object",
        "properties": props,
        "additionalProperties": false,
        "$defs": defs,
    })
}

fn section_schema(doc: &str, keys: &[KeySpec]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for key in keys {
        let mut schema = option_schema(&key.option);
        if let Value::Object(obj) = &mut schema {
            if let Some(min) = key.bounds.min {
                let name = if key.bounds.exclusive_min {
                    "exclusiveMinimum"
                } else {
                    "minimum"
                };
                obj.insert(name.to_owned(), json!(min));
            }
            if let Some(max) = key.bounds.max {
                obj.insert("maximum".to_owned(), json!(max));
            }
            if let Some(example) = &key.example {
                obj.insert("examples".to_owned(), json!([example]));
            }
        }
        if key.is_required() {
            required.push(key.name().to_owned());
        }
        props.insert(key.name().to_owned(), schema);
    }
    json!({
        "type": "object",
        "description": doc,
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

fn plugin_schema(info: &PluginInfo) -> Value {
    let mut props = reserved_properties();
    let mut required = Vec::new();
    for option in &info.options {
        if option.default.is_none() {
            required.push(option.name.clone());
        }
        props.insert(option.name.clone(), option_schema(option));
    }
    json!({
        "type": "object",
        "description": format!("{} {} ({}): {}", info.name, info.version, info.kind, info.description),
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

fn reserved_properties() -> Map<String, Value> {
    let mut props = Map::new();
    props.insert(
        "plugin".to_owned(),
        json!({ "type": "string", "description": "Which plugin (short or full name), when the table's name differs." }),
    );
    props.insert(
        "path".to_owned(),
        json!({ "type": "string", "description": "Load the plugin from this file; relative to the manifest." }),
    );
    props.insert(
        SANDBOX.name.to_owned(),
        json!({ "$ref": format!("#/$defs/{}", SANDBOX.name) }),
    );
    props
}

/// Type, description, default and choices of one option.
fn option_schema(option: &OptionSpec) -> Value {
    let mut obj = match option.ty {
        OptionType::String | OptionType::Path => json!({ "type": "string" }),
        OptionType::Integer => json!({ "type": "integer" }),
        // TOML integers are accepted where a float is expected.
        OptionType::Float => json!({ "type": "number" }),
        OptionType::Boolean => json!({ "type": "boolean" }),
        OptionType::StringList => json!({ "type": "array", "items": { "type": "string" } }),
        OptionType::IntegerList => json!({ "type": "array", "items": { "type": "integer" } }),
        OptionType::Table => json!({ "type": "object" }),
        OptionType::Any => json!({}),
    };
    if let Value::Object(map) = &mut obj {
        map.insert("description".to_owned(), Value::String(option.doc.clone()));
        if let Some(default) = option.default.as_ref().filter(|d| !d.is_null()) {
            map.insert("default".to_owned(), default.clone());
        }
        if !option.choices.is_empty() {
            let choices = json!(option.choices);
            match option.ty {
                OptionType::StringList => {
                    map.insert(
                        "items".to_owned(),
                        json!({ "type": "string", "enum": choices }),
                    );
                }
                _ => {
                    map.insert("enum".to_owned(), choices);
                }
            }
        }
    }
    obj
}
