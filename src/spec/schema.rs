//! `pipeline schema`: a JSON Schema (draft 2020-12) of the experiment file, for editors (Even Better TOML / taplo
//! read it from a `#:schema` line). Each stage kind's parameters come from the very struct its constructor reads
//! them into (`stages::StageKind::params_schema`, derived by schemars: types, defaults, doc comments, enums,
//! ranges); `[executor.slurm]` from `spec::resources::Resources`; `[sweep]`'s settings from `spec::sweep::Settings`,
//! with its swept parameters (any other key) described here.

use serde_json::{Map, Value, json};

use super::sweep::Settings;
use crate::stages::StageKind;

/// The whole schema, as JSON.
pub fn experiment_schema() -> Value {
    let mut defs = Map::new();
    let mut kinds = Vec::new();
    for kind in StageKind::ALL {
        let name = format!("stage_{}", kind.name());
        let Some(params) = stage_schema(kind, &mut defs) else {
            continue;
        };
        defs.insert(name.clone(), Value::Object(params));
        kinds.push(json!({
            "if": { "properties": { "kind": { "const": kind.name() } }, "required": ["kind"] },
            "then": { "$ref": format!("#/$defs/{name}") }
        }));
    }
    let kind_names: Vec<&str> = StageKind::ALL.iter().map(|k| k.name()).collect();
    let (resources, slurm) = resources_schemas(&kind_names);
    defs.insert("resources".into(), resources);
    let sweep = sweep_schema(&mut defs);
    defs.insert("sweep".into(), sweep);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/pipeline/experiment.schema.json",
        "title": "pipeline experiment",
        "description": "An experiment file of `pipeline`: stages from MIDI files to a trained LSTM and new music.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "name": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                "description": "Names the report folder (default: the file's name)."
            },
            "stages": {
                "type": "object",
                "description": "The stages, by name: each has a `kind` and its parameters.",
                "propertyNames": { "pattern": "^[A-Za-z0-9_][A-Za-z0-9_-]*$" },
                "additionalProperties": {
                    "type": "object",
                    "required": ["kind"],
                    "properties": { "kind": { "enum": kind_names } },
                    "allOf": kinds
                }
            },
            "sweep": { "$ref": "#/$defs/sweep" },
            "executor": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "slurm": {
                        "description": "`sbatch` settings for every stage; a table per stage kind overrides them.",
                        "allOf": [slurm]
                    }
                }
            }
        },
        "$defs": defs
    })
}

/// A stage kind's parameters as a schema object: the struct's derived schema with `kind` and `inputs` added and
/// nothing else allowed. Its nested definitions move to `defs`, where `$ref`s find them.
fn stage_schema(kind: StageKind, defs: &mut Map<String, Value>) -> Option<Map<String, Value>> {
    let mut params = kind.params_schema().to_value();
    // Nested definitions (enums such as `input` or `optimizer`) move to the top, where `$ref`s find them.
    if let Some(Value::Object(nested)) = params.as_object_mut().and_then(|o| o.remove("$defs")) {
        defs.extend(nested);
    }
    let Value::Object(mut params) = params else {
        return None;
    };
    params.remove("$schema");
    params.remove("title");
    let properties = params
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("a struct's schema has properties");
    properties.insert(
        "kind".into(),
        json!({ "const": kind.name(), "description": "The stage kind." }),
    );
    if !kind.inputs().is_empty() {
        properties.insert(
            "inputs".into(),
            json!({
                "type": "array",
                "items": { "type": "string" },
                "minItems": kind.inputs().len(),
                "maxItems": kind.inputs().len(),
                "description": format!(
                    "The stage(s) this one reads: {}.",
                    kind.inputs().iter().map(|slot| slot.iter().map(|i| format!("{i:?}").to_lowercase()).collect::<Vec<_>>().join(" or ")).collect::<Vec<_>>().join(", ")
                ),
            }),
        );
    }
    // The struct's own required parameters (a source's `path`) stay required beside `kind` and `inputs`.
    let mut required = vec![json!("kind")];
    if !kind.inputs().is_empty() {
        required.push(json!("inputs"));
    }
    if let Some(Value::Array(own)) = params.remove("required") {
        required.extend(own);
    }
    params.insert("required".into(), Value::Array(required));
    params.insert("additionalProperties".into(), json!(false));
    params.insert("title".into(), json!(format!("a `{}` stage", kind.name())));
    Some(params)
}

/// `[executor.slurm]`'s resources (`$defs/resources`) and the `slurm` table: the same keys, and a table per stage
/// kind over them.
fn resources_schemas(kind_names: &[&str]) -> (Value, Value) {
    let mut resources =
        schemars::SchemaGenerator::new(schemars::generate::SchemaSettings::draft2020_12())
            .into_root_schema_for::<super::resources::Resources>()
            .to_value();
    if let Some(o) = resources.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    let mut slurm = resources.clone();
    if let Some(props) = slurm.get_mut("properties").and_then(Value::as_object_mut) {
        for kind in kind_names {
            props.insert(
                (*kind).to_string(),
                json!({ "$ref": "#/$defs/resources", "description": format!("Resources of every `{kind}` stage, over the defaults.") }),
            );
        }
    }
    for schema in [&mut slurm, &mut resources] {
        if let Some(o) = schema.as_object_mut() {
            o.insert("additionalProperties".into(), json!(false));
        }
    }
    (resources, slurm)
}

/// The stage kinds and their parameters as a Markdown table (`pipeline schema --markdown`), made from `schema` (the
/// experiment schema): the manual's stage reference (docs/src/reference/stages.md) is this output, and a test fails when the two differ.
pub fn parameter_table(schema: &Value) -> String {
    let mut out =
        String::from("| kind | input | output | parameters |\n| --- | --- | --- | --- |\n");
    for kind in StageKind::ALL {
        let def = &schema["$defs"][format!("stage_{}", kind.name())];
        let required: Vec<&str> = def["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let params: Vec<String> = def["properties"]
            .as_object()
            .map(|props| {
                props
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "kind" | "inputs"))
                    .map(|(k, v)| parameter(k, v, required.contains(&k.as_str()), schema))
                    .collect()
            })
            .unwrap_or_default();
        let inputs: Vec<String> = kind
            .inputs()
            .iter()
            .map(|alternatives| {
                let names: Vec<String> = alternatives.iter().map(ToString::to_string).collect();
                names.join(" or ")
            })
            .collect();
        let cell = |v: Vec<String>| {
            if v.is_empty() {
                "—".to_string()
            } else {
                v.join(", ")
            }
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            kind.name(),
            cell(inputs),
            kind.output(),
            cell(params)
        ));
    }
    out
}

/// One parameter for [`parameter_table`]: `` `top` = 1 (1–128) ``, its values where it is one of a few, or
/// "(required)".
fn parameter(key: &str, p: &Value, required: bool, schema: &Value) -> String {
    let mut text = format!("`{key}`");
    if let Some(default) = p.get("default") {
        text.push_str(&format!(" = {default}"));
    }
    let values = p
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .map(|name| &schema["$defs"][name])
        .and_then(enum_values);
    let bounds = if p["type"] == "array" {
        range(&p["items"]).map(|r| format!("each {r}"))
    } else {
        range(p)
    };
    let notes: Vec<String> = [
        required.then(|| "required".to_string()),
        values.map(|v| format!("one of {v}")),
        bounds,
    ]
    .into_iter()
    .flatten()
    .collect();
    if !notes.is_empty() {
        text.push_str(&format!(" ({})", notes.join("; ")));
    }
    text
}

/// `"a", "b"` for a schema whose values are a few strings (an enum, or `oneOf` constants).
fn enum_values(def: &Value) -> Option<String> {
    let values: Vec<String> = match (def.get("enum"), def.get("oneOf")) {
        (Some(Value::Array(v)), _) => v.iter().map(ToString::to_string).collect(),
        (_, Some(Value::Array(alts))) => alts
            .iter()
            .filter_map(|a| a.get("const").or_else(|| a.get("enum")?.get(0)))
            .map(ToString::to_string)
            .collect(),
        _ => return None,
    };
    (!values.is_empty()).then(|| values.join(", "))
}

/// A number's bounds as a reader writes them: `1–128`, `0 ≤ x < 1`, `≥ 1`, `> 0`; `None` without bounds.
fn range(p: &Value) -> Option<String> {
    let number = |k: &str| p.get(k).filter(|v| v.is_number()).map(ToString::to_string);
    let low = number("exclusiveMinimum")
        .map(|m| (m, "<"))
        .or(number("minimum").map(|m| (m, "≤")));
    let high = number("exclusiveMaximum")
        .map(|m| (m, "<"))
        .or(number("maximum").map(|m| (m, "≤")));
    match (low, high) {
        (Some((lo, "≤")), Some((hi, "≤"))) => Some(format!("{lo}–{hi}")),
        (Some((lo, a)), Some((hi, b))) => Some(format!("{lo} {a} x {b} {hi}")),
        (Some((lo, "≤")), None) => Some(format!("≥ {lo}")),
        (Some((lo, _)), None) => Some(format!("> {lo}")),
        (None, Some((hi, "≤"))) => Some(format!("≤ {hi}")),
        (None, Some((hi, _))) => Some(format!("< {hi}")),
        (None, None) => None,
    }
}

/// `[sweep]`: its settings and `[sweep.prune]` as schemars derives them from the structs the parser decodes
/// (`sweep::Settings`), and any other key a parameter to sweep (`"stage.key"`) with a list of values or (random
/// mode) a distribution. Nested definitions move to `defs`.
fn sweep_schema(defs: &mut Map<String, Value>) -> Value {
    let mut sweep =
        schemars::SchemaGenerator::new(schemars::generate::SchemaSettings::draft2020_12())
            .into_root_schema_for::<Settings>()
            .to_value();
    if let Some(Value::Object(nested)) = sweep.as_object_mut().and_then(|o| o.remove("$defs")) {
        defs.extend(nested);
    }
    let pair =
        json!({ "type": "array", "items": { "type": "number" }, "minItems": 2, "maxItems": 2 });
    let object = sweep
        .as_object_mut()
        .expect("a struct's schema is an object");
    object.remove("$schema");
    object.remove("title");
    object.insert(
        "description".into(),
        json!("Parameters to sweep, `\"stage.key\" = [values]`, and how to combine them."),
    );
    object.insert(
        "propertyNames".into(),
        json!({ "pattern": "^(mode|repeat|trials|seed|prune|[A-Za-z0-9_-]+\\.[A-Za-z0-9_]+)$" }),
    );
    // Every key that is no setting is a swept parameter.
    object.insert(
        "additionalProperties".into(),
        json!({
            "oneOf": [
                { "type": "array", "minItems": 1, "description": "The values to take." },
                { "type": "object", "additionalProperties": false, "required": ["uniform"], "properties": { "uniform": pair } },
                { "type": "object", "additionalProperties": false, "required": ["log_uniform"], "properties": { "log_uniform": pair } },
                { "type": "object", "additionalProperties": false, "required": ["int"], "properties": { "int": { "type": "array", "items": { "type": "integer" }, "minItems": 2, "maxItems": 2 } } },
                { "type": "object", "additionalProperties": false, "required": ["choice"], "properties": { "choice": { "type": "array", "minItems": 1 } } }
            ]
        }),
    );
    sweep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::sweep::{Metric, Study};
    use std::path::Path;

    use crate::spec::experiment::tests::FILE as EXPERIMENT;

    /// A `[sweep]` table where only `key = value` can be out of bounds.
    fn sweep_with(key: &str, value: i64) -> String {
        let random = "mode = \"random\"\n\"model.hidden\" = [8, 16]\n";
        match key {
            "repeat" => format!("[sweep]\n\"model.hidden\" = [8]\nrepeat = {value}\n"),
            "trials" => format!("[sweep]\n{random}trials = {value}\n"),
            "seed" => format!("[sweep]\n{random}trials = 1\nseed = {value}\n"),
            "min_epochs" | "reduction" => format!(
                "[sweep]\n\"model.hidden\" = [8]\n[sweep.prune]\nmethod = \"asha\"\nmetric = \"{}\"\n{key} = {value}\n",
                Metric::ALL[0].name()
            ),
            other => panic!("no probe for `{other}`"),
        }
    }

    /// Whether loading refuses the value for being out of its bounds, or out of what its type holds (not for what it
    /// means beside other keys).
    fn refused(key: &str, value: i64) -> bool {
        let text = format!("{EXPERIMENT}{}", sweep_with(key, value));
        match Study::from_text(Path::new("x.toml"), &text, &[]) {
            Ok(_) => false,
            Err(diags) => diags.0.iter().any(|d| {
                let message = d.render(false);
                d.key
                    .as_deref()
                    .is_some_and(|k| k.ends_with(&format!(".{key}")))
                    && (message.contains("must be") || message.contains("expected a whole number"))
            }),
        }
    }

    #[test]
    fn the_sweep_schema_and_the_sweep_parser_agree_on_every_bound() {
        let schema = experiment_schema();
        let sweep = &schema["$defs"]["sweep"]["properties"];
        let prune = &schema["$defs"]["PruneSettings"]["properties"];
        let mut checked = 0;
        for (key, property) in [
            ("repeat", &sweep["repeat"]),
            ("trials", &sweep["trials"]),
            ("seed", &sweep["seed"]),
            ("min_epochs", &prune["min_epochs"]),
            ("reduction", &prune["reduction"]),
        ] {
            let min = property["minimum"].as_i64();
            let max = property["maximum"].as_i64();
            assert!(min.is_some(), "`{key}` has no minimum in the schema");
            let mut probes: Vec<i64> = [min, max]
                .into_iter()
                .flatten()
                .flat_map(|b| [b - 1, b, b + 1])
                .collect();
            if max.is_none() {
                probes.push(1 << 40);
            }
            for v in probes {
                let schema_says = min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m);
                assert_eq!(
                    schema_says,
                    !refused(key, v),
                    "`{key} = {v}`: the schema {} it, the parser does not",
                    if schema_says { "allows" } else { "refuses" }
                );
                checked += 1;
            }
        }
        assert!(checked >= 25, "{checked} probes");
    }
}
