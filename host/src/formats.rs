//! Tool definitions for models and clients, exported from the host's
//! [`ToolDescriptor`]s.
//!
//! | format | shape |
//! |---|---|
//! | [`ToolFormat::Anthropic`] | Messages API `tools[]`: `name`, `description`, `input_schema`, `strict` when the schema qualifies |
//! | [`ToolFormat::OpenAiChat`] | Chat Completions `{type: "function", function: {name, description, parameters, strict?}}` |
//! | [`ToolFormat::OpenAiResponses`] | Responses API `{type: "function", name, description, parameters, strict}`; `strict` is always explicit, because omitting it there means strict |
//! | [`ToolFormat::Mcp`] | MCP `Tool`: `name`, `title`, `description`, `inputSchema`, `outputSchema`, `annotations` computed from the grants |
//!
//! Model formats allow names of `[A-Za-z0-9_-]{1,64}`, so `plugin.tool`
//! becomes `plugin__tool`, shortened with a hash past 64 characters;
//! [`ToolNames`] maps both ways and two tools mapping to one name are
//! refused. Schemas are made self-contained for models: local `$ref`s into
//! `$defs`/`definitions` are inlined (nothing is ever fetched), and every
//! `description` and `title` inside is sanitised like the tool's own. A
//! schema whose inlined form would pass a node budget (refs that fan out
//! double at each level) is exported with its `$defs` instead, not strict.

use crate::descriptor::ToolDescriptor;
use crate::error::Error;
use crate::hash::sha256_hex;
use crate::policy::Effect;
use crate::text::sanitize_text;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Longest name the model formats accept.
const MAX_MODEL_NAME: usize = 64;
/// Cap for `description`/`title` strings inside schemas.
const SCHEMA_TEXT_CAP: usize = 1024;
/// Deepest `$ref` chain inlined.
const MAX_REF_DEPTH: usize = 32;
/// Most JSON values an inlined schema may be made of: 31 definitions each
/// an `anyOf` of two refs to the next would otherwise inline to 2^31.
const MAX_INLINED_NODES: usize = 10_000;

/// A target format for tool definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ToolFormat {
    /// Anthropic Messages API `tools`.
    Anthropic,
    /// OpenAI Chat Completions `tools`.
    OpenAiChat,
    /// OpenAI Responses API `tools`.
    OpenAiResponses,
    /// Model Context Protocol `Tool` objects.
    Mcp,
}

/// The names under which tools are offered to a model, both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolNames {
    to_model: BTreeMap<String, String>,
    to_tool: BTreeMap<String, String>,
}

impl ToolNames {
    /// Maps every tool's `plugin.tool` name to a model-safe name.
    ///
    /// # Errors
    ///
    /// [`Error::NameCollision`] when two tools map to the same model name.
    pub fn new(tools: &[ToolDescriptor]) -> Result<ToolNames, Error> {
        let mut names = ToolNames::default();
        for tool in tools {
            let model = model_name(&tool.plugin, &tool.tool);
            if let Some(other) = names.to_tool.get(&model) {
                return Err(Error::NameCollision {
                    model_name: model,
                    tools: vec![other.clone(), tool.name.clone()],
                });
            }
            names.to_tool.insert(model.clone(), tool.name.clone());
            names.to_model.insert(tool.name.clone(), model);
        }
        Ok(names)
    }

    /// The model-facing name of `plugin.tool`.
    pub fn model_name(&self, tool: &str) -> Option<&str> {
        self.to_model.get(tool).map(String::as_str)
    }

    /// The `plugin.tool` name behind a model-facing name, e.g. the `name` of
    /// a model's `tool_use` block. Unknown names give `None`: never guess.
    pub fn tool_name(&self, model_name: &str) -> Option<&str> {
        self.to_tool.get(model_name).map(String::as_str)
    }
}

/// `plugin__tool`, or past 64 characters its first 55 characters, `_` and 8
/// hex digits of the sha256 of `plugin.tool`.
fn model_name(plugin: &str, tool: &str) -> String {
    let name = format!("{plugin}__{tool}");
    if name.len() <= MAX_MODEL_NAME {
        return name;
    }
    let hash = sha256_hex(format!("{plugin}.{tool}").as_bytes());
    // Names are ASCII (checked at load), so byte slicing is safe.
    format!("{}_{}", &name[..MAX_MODEL_NAME - 9], &hash[..8])
}

/// Tool definitions in `format`, with the name map to dispatch calls back.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExportedTools {
    /// One definition per tool, in the order given.
    pub definitions: Vec<Value>,
    /// Model-facing names and back.
    pub names: ToolNames,
}

/// Exports `tools` in `format`.
///
/// # Errors
///
/// [`Error::NameCollision`] when two tools map to the same model name, and
/// [`Error::InvalidPlugin`] when a tool's input schema cannot describe an
/// object (the host only ever passes objects).
pub fn export_tools(tools: &[ToolDescriptor], format: ToolFormat) -> Result<ExportedTools, Error> {
    let names = ToolNames::new(tools)?;
    let mut definitions = Vec::with_capacity(tools.len());
    for tool in tools {
        let model = names
            .model_name(&tool.name)
            .unwrap_or(&tool.name)
            .to_string();
        let input = model_schema(&tool.input_schema).map_err(|reason| Error::InvalidPlugin {
            plugin: tool.plugin.clone(),
            reason: format!("tool `{}`: input schema: {reason}", tool.tool),
        })?;
        let strict = input.strict;
        let description = tool.description.clone();
        definitions.push(match format {
            ToolFormat::Anthropic => {
                let mut def = json!({
                    "name": model,
                    "description": description,
                    "input_schema": input.schema,
                });
                if strict {
                    def["strict"] = json!(true);
                }
                def
            }
            ToolFormat::OpenAiChat => {
                let mut function = json!({
                    "name": model,
                    "description": description,
                    "parameters": input.schema,
                });
                if strict {
                    function["strict"] = json!(true);
                }
                json!({"type": "function", "function": function})
            }
            ToolFormat::OpenAiResponses => json!({
                "type": "function",
                "name": model,
                "description": description,
                "parameters": input.schema,
                "strict": strict,
            }),
            ToolFormat::Mcp => mcp_tool(tool, input.schema),
        });
    }
    Ok(ExportedTools { definitions, names })
}

/// An MCP `Tool`. Annotations are computed from what the host enforces, not
/// taken from the plugin: read-only unless its effect (already raised by
/// its grants) says otherwise; open-world exactly when HTTP destinations
/// are granted.
fn mcp_tool(tool: &ToolDescriptor, input_schema: Value) -> Value {
    let mut def = json!({
        "name": tool.name,
        "description": tool.description,
        "inputSchema": input_schema,
        "annotations": {
            "readOnlyHint": tool.effect == Effect::Read,
            "destructiveHint": tool.effect == Effect::Destructive,
            "openWorldHint": !tool.grants.http.is_empty(),
        },
    });
    if let Some(title) = &tool.title {
        def["title"] = json!(title);
        def["annotations"]["title"] = json!(title);
    }
    if let Some(Ok(output)) = tool.output_schema.as_ref().map(model_schema) {
        def["outputSchema"] = output.schema;
    }
    def
}

/// A schema prepared for a model.
struct ModelSchema {
    schema: Value,
    /// Whether it qualifies for strict mode.
    strict: bool,
}

/// Inlines local `$ref`s, sanitises texts, makes the root an object schema
/// and decides strictness. A recursive schema cannot be inlined: it is kept
/// with its `$defs` and is never strict.
fn model_schema(schema: &Value) -> Result<ModelSchema, String> {
    let mut schema = match schema {
        Value::Bool(true) => json!({"type": "object"}),
        Value::Object(_) => schema.clone(),
        _ => return Err("it does not accept an object".into()),
    };
    match schema.get("type") {
        None => {
            schema["type"] = json!("object");
        }
        Some(Value::String(t)) if t == "object" => {}
        Some(other) => return Err(format!("its root type is {other}, not \"object\"")),
    }
    let (schema, inlined) = match inline_refs(&schema) {
        Some(inlined) => (inlined, true),
        None => (schema, false),
    };
    let mut schema = schema;
    // Model APIs take a bare schema; the dialect marker is noise there.
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
    }
    sanitize_schema_texts(&mut schema);
    let strict = inlined && qualifies_for_strict(&schema);
    Ok(ModelSchema { schema, strict })
}

/// The schema with every local `$ref` replaced by its target and the
/// definitions removed; `None` if a reference is recursive, too deep or
/// points anywhere but the schema's own `$defs`/`definitions`, or if the
/// result would pass [`MAX_INLINED_NODES`] (checked as it is built, so the
/// work stops there too).
fn inline_refs(root: &Value) -> Option<Value> {
    fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        if !(pointer.starts_with("/$defs/") || pointer.starts_with("/definitions/")) {
            return None;
        }
        root.pointer(pointer)
    }
    fn walk(
        root: &Value,
        value: &Value,
        stack: &mut Vec<String>,
        budget: &mut usize,
    ) -> Option<Value> {
        *budget = budget.checked_sub(1)?;
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    if stack.contains(reference) || stack.len() >= MAX_REF_DEPTH {
                        return None;
                    }
                    let target = resolve(root, reference)?;
                    stack.push(reference.clone());
                    let resolved = walk(root, target, stack, budget)?;
                    stack.pop();
                    // Keywords beside `$ref` (e.g. a description) win.
                    let mut merged = match resolved {
                        Value::Object(m) => m,
                        other => return Some(other),
                    };
                    for (k, v) in map {
                        if k != "$ref" {
                            merged.insert(k.clone(), walk(root, v, stack, budget)?);
                        }
                    }
                    return Some(Value::Object(merged));
                }
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), walk(root, v, stack, budget)?);
                }
                Some(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .map(|v| walk(root, v, stack, budget))
                .collect::<Option<Vec<_>>>()
                .map(Value::Array),
            other => Some(other.clone()),
        }
    }
    let mut budget = MAX_INLINED_NODES;
    let mut inlined = walk(root, root, &mut Vec::new(), &mut budget)?;
    if let Value::Object(map) = &mut inlined {
        map.remove("$defs");
        map.remove("definitions");
    }
    Some(inlined)
}

/// Sanitises every `description` and `title` string in a schema: tool
/// poisoning hides in schema fields as well as in the tool's description.
fn sanitize_schema_texts(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(text) if key == "description" || key == "title" => {
                        *text = sanitize_text(text, SCHEMA_TEXT_CAP);
                    }
                    _ => sanitize_schema_texts(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sanitize_schema_texts),
        _ => {}
    }
}

/// Keywords strict mode does not support.
const NOT_STRICT: &[&str] = &[
    "$ref",
    "allOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "unevaluatedProperties",
    "unevaluatedItems",
    "minProperties",
    "maxProperties",
    "contains",
];

/// Strict mode (OpenAI structured outputs, Anthropic strict tools) needs
/// every object closed (`additionalProperties: false`) with every property
/// required, and none of the unsupported keywords. Tools that do not qualify
/// are exported non-strict rather than changed.
fn qualifies_for_strict(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            if NOT_STRICT.iter().any(|k| map.contains_key(*k)) {
                return false;
            }
            let is_object =
                map.get("type") == Some(&json!("object")) || map.contains_key("properties");
            if is_object {
                if map.get("additionalProperties") != Some(&Value::Bool(false)) {
                    return false;
                }
                let properties = map.get("properties").and_then(Value::as_object);
                let required: Vec<&str> = map
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if properties.is_some_and(|p| !p.keys().all(|k| required.contains(&k.as_str()))) {
                    return false;
                }
            }
            map.iter().all(|(key, value)| match key.as_str() {
                // Literal values, not subschemas.
                "enum" | "const" | "default" | "examples" | "required" | "description"
                | "title" => true,
                "properties" | "$defs" | "definitions" => value
                    .as_object()
                    .is_some_and(|m| m.values().all(qualifies_for_strict)),
                _ => qualifies_for_strict(value),
            })
        }
        Value::Array(items) => items.iter().all(qualifies_for_strict),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Grants;

    fn descriptor(plugin: &str, tool: &str) -> ToolDescriptor {
        ToolDescriptor {
            name: format!("{plugin}.{tool}"),
            plugin: plugin.into(),
            tool: tool.into(),
            plugin_sha256: "0".repeat(64),
            tool_list_sha256: "1".repeat(64),
            title: None,
            description: "d".into(),
            input_schema: json!({"type": "object"}),
            output_schema: None,
            effect: Effect::Read,
            grants: Grants {
                dirs: Vec::new(),
                env: Vec::new(),
                secrets: Vec::new(),
                http: Vec::new(),
            },
            approval: crate::policy::ApprovalSetting::Never,
        }
    }

    #[test]
    fn colliding_model_names_are_refused() {
        // `a` + `b__c` and `a__b` + `c` both become `a__b__c`.
        let tools = [descriptor("a", "b__c"), descriptor("a__b", "c")];
        match ToolNames::new(&tools) {
            Err(Error::NameCollision { model_name, tools }) => {
                assert_eq!(model_name, "a__b__c");
                assert_eq!(tools, ["a.b__c", "a__b.c"]);
            }
            other => panic!("expected a collision, got {other:?}"),
        }
        assert!(export_tools(&tools, ToolFormat::Anthropic).is_err());
    }

    #[test]
    fn reverse_map_never_guesses() {
        let tools = [descriptor("files", "read_file")];
        let names = ToolNames::new(&tools).expect("names");
        assert_eq!(names.tool_name("files__read_file"), Some("files.read_file"));
        assert_eq!(names.tool_name("files.read_file"), None);
        assert_eq!(names.tool_name("read_file"), None);
    }

    #[test]
    fn formats_have_their_documented_shapes() {
        let tools = [descriptor("files", "read_file")];
        let anthropic = export_tools(&tools, ToolFormat::Anthropic)
            .expect("ok")
            .definitions;
        assert_eq!(anthropic[0]["name"], "files__read_file");
        assert_eq!(anthropic[0]["input_schema"]["type"], "object");
        assert!(anthropic[0].get("strict").is_none());
        let chat = export_tools(&tools, ToolFormat::OpenAiChat)
            .expect("ok")
            .definitions;
        assert_eq!(chat[0]["type"], "function");
        assert_eq!(chat[0]["function"]["name"], "files__read_file");
        let responses = export_tools(&tools, ToolFormat::OpenAiResponses)
            .expect("ok")
            .definitions;
        // Omitting `strict` means strict there: always explicit.
        assert_eq!(responses[0]["strict"], false);
        let mcp = export_tools(&tools, ToolFormat::Mcp)
            .expect("ok")
            .definitions;
        assert_eq!(mcp[0]["name"], "files.read_file");
        assert_eq!(mcp[0]["annotations"]["readOnlyHint"], true);
        assert_eq!(mcp[0]["annotations"]["openWorldHint"], false);
    }

    #[test]
    fn names_map_both_ways() {
        assert_eq!(model_name("files", "read_file"), "files__read_file");
        let long = model_name(&"p".repeat(40), &"t".repeat(40));
        assert_eq!(long.len(), 64);
        assert!(
            long.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
        // Different long names that share a prefix stay distinct.
        assert_ne!(
            long,
            model_name(&"p".repeat(40), &format!("{}x", "t".repeat(39)))
        );
    }

    #[test]
    fn local_refs_are_inlined_and_defs_removed() {
        let schema = json!({
            "type": "object",
            "properties": {"range": {"$ref": "#/$defs/Range", "description": "which lines"}},
            "$defs": {"Range": {"type": "object", "properties": {"start": {"type": "integer"}}}}
        });
        let inlined = inline_refs(&schema).expect("inlines");
        assert_eq!(
            inlined,
            json!({
                "type": "object",
                "properties": {"range": {
                    "type": "object",
                    "properties": {"start": {"type": "integer"}},
                    "description": "which lines"
                }}
            })
        );
    }

    #[test]
    fn recursive_and_remote_refs_are_not_inlined() {
        let recursive = json!({
            "type": "object",
            "properties": {"node": {"$ref": "#/$defs/Node"}},
            "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}
        });
        assert!(inline_refs(&recursive).is_none());
        let remote = json!({"properties": {"a": {"$ref": "https://example.com/s.json"}}});
        assert!(inline_refs(&remote).is_none());
        let root = json!({"properties": {"a": {"$ref": "#"}}});
        assert!(inline_refs(&root).is_none());
        // Kept as is, never strict.
        let kept = model_schema(&recursive).expect("still exported");
        assert!(!kept.strict);
        assert!(kept.schema.get("$defs").is_some());
    }

    #[test]
    fn refs_that_fan_out_are_exported_without_inlining_past_the_budget() {
        // 31 definitions, each an `anyOf` of two refs to the next: 2^31
        // nodes inlined.
        let mut defs = Map::new();
        for i in 0..31 {
            let next = json!({"$ref": format!("#/$defs/D{}", i + 1)});
            defs.insert(format!("D{i}"), json!({"anyOf": [next, next]}));
        }
        defs.insert("D31".into(), json!({"type": "string"}));
        let schema = json!({
            "type": "object",
            "properties": {"x": {"$ref": "#/$defs/D0"}},
            "required": ["x"],
            "additionalProperties": false,
            "$defs": defs,
        });
        assert!(inline_refs(&schema).is_none());
        let kept = model_schema(&schema).expect("still exported");
        assert!(!kept.strict);
        assert_eq!(kept.schema["$defs"].as_object().map(Map::len), Some(32));
        // A few levels of the same fan-out inline.
        let mut small = schema.clone();
        small["properties"]["x"]["$ref"] = json!("#/$defs/D27");
        for i in 0..27 {
            small["$defs"]
                .as_object_mut()
                .expect("defs")
                .remove(&format!("D{i}"));
        }
        let inlined = inline_refs(&small).expect("within the budget");
        assert_eq!(
            inlined["properties"]["x"]["anyOf"][1]["anyOf"][0]["anyOf"][1]["anyOf"][0]["type"],
            "string"
        );
    }

    #[test]
    fn strict_only_when_the_schema_qualifies() {
        let closed = json!({
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
            "additionalProperties": false
        });
        assert!(model_schema(&closed).expect("ok").strict);
        let optional = json!({
            "type": "object",
            "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["path"],
            "additionalProperties": false
        });
        assert!(!model_schema(&optional).expect("ok").strict);
        let open = json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]});
        assert!(!model_schema(&open).expect("ok").strict);
        let nested_open = json!({
            "type": "object",
            "properties": {"inner": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}},
            "required": ["inner"],
            "additionalProperties": false
        });
        assert!(!model_schema(&nested_open).expect("ok").strict);
        let pattern = json!({
            "type": "object", "properties": {}, "additionalProperties": false,
            "patternProperties": {"^x": {"type": "string"}}
        });
        assert!(!model_schema(&pattern).expect("ok").strict);
    }

    #[test]
    fn root_must_describe_an_object() {
        assert_eq!(
            model_schema(&json!(true)).expect("ok").schema,
            json!({"type": "object"})
        );
        assert_eq!(
            model_schema(&json!({"properties": {}})).expect("ok").schema["type"],
            json!("object")
        );
        assert!(model_schema(&json!({"type": "string"})).is_err());
        assert!(model_schema(&json!(false)).is_err());
        let marked =
            json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"});
        assert_eq!(
            model_schema(&marked).expect("ok").schema,
            json!({"type": "object"})
        );
    }

    #[test]
    fn schema_texts_are_sanitised() {
        let schema = json!({
            "type": "object",
            "properties": {"a": {"type": "string", "description": "x\u{1b}[31my\u{202e}z"}},
            "description": "top\u{7}"
        });
        let out = model_schema(&schema).expect("ok").schema;
        assert_eq!(out["properties"]["a"]["description"], json!("xyz"));
        assert_eq!(out["description"], json!("top"));
    }
}
