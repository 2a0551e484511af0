//! The JSON Schema describes llem's tables and every known plugin's options.

use llem_manifest::json_schema;
use serde_json::json;

use crate::common::plugins;

#[test]
fn schema_has_experiment_keys_with_defaults_and_bounds() {
    let schema = json_schema(&plugins());
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    let exp = &schema["properties"]["experiment"];
    assert_eq!(exp["additionalProperties"], false);
    assert_eq!(exp["properties"]["cycles"]["type"], "integer");
    assert_eq!(exp["properties"]["cycles"]["minimum"], 1.0);
    assert_eq!(exp["properties"]["duration_s"]["exclusiveMinimum"], 0.0);
    assert_eq!(exp["properties"]["name"]["default"], "llem-run");
    assert_eq!(exp["properties"]["model"]["type"], "string");
    assert_eq!(exp["required"], json!([]));
}

#[test]
fn schema_has_each_plugins_options_under_short_and_full_names() {
    let schema = json_schema(&plugins());
    let plugins = &schema["properties"]["plugins"]["properties"];
    assert_eq!(plugins["vllm"]["$ref"], "#/$defs/plugin-backend-vllm");
    assert_eq!(
        plugins["backend-vllm"]["$ref"],
        "#/$defs/plugin-backend-vllm"
    );
    let vllm = &schema["$defs"]["plugin-backend-vllm"];
    assert_eq!(vllm["additionalProperties"], false);
    assert_eq!(vllm["required"], json!(["served_model_name"]));
    assert_eq!(
        vllm["properties"]["max_num_seqs"],
        json!({ "type": "integer", "description": "Max concurrent sequences", "default": 256 })
    );
    assert_eq!(
        vllm["properties"]["dtype"]["enum"],
        json!(["auto", "bfloat16", "float16"])
    );
    assert_eq!(vllm["properties"]["sandbox"]["$ref"], "#/$defs/sandbox");
    assert_eq!(
        schema["$defs"]["plugin-energy-rapl"]["properties"]["domains"]["items"]["enum"][0],
        "package"
    );
    let sandbox = &schema["$defs"]["sandbox"];
    assert_eq!(sandbox["properties"]["read"]["items"]["type"], "string");
    assert_eq!(sandbox["properties"]["memory_mib"]["default"], 256);
    // Instances named freely (`plugin = "…"`) still get the reserved keys typed.
    assert_eq!(
        schema["properties"]["plugins"]["additionalProperties"]["$ref"],
        "#/$defs/plugin-instance"
    );
}
