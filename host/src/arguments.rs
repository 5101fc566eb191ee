//! Call arguments: parsed once, strictly, and validated against the tool's
//! input schema before the plugin runs.
//!
//! Strict means duplicate keys are refused: `{"path": "a", "path": "b"}`
//! could mean different things to the validator and to the plugin's own
//! parser, so it means nothing. The plugin then receives exactly the bytes
//! that were validated.
//!
//! Schema validation never fetches anything (every `$ref` outside the schema
//! itself is refused) and uses the `regex` engine, whose matching time is
//! linear in the input, so a hostile `pattern` cannot stall the host.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// The biggest arguments a call may have, in bytes (1 MiB): refused before
/// they are parsed, so a caller cannot make the host build a huge value.
pub const MAX_ARGUMENT_BYTES: usize = 1 << 20;

/// Checks a call's raw arguments before anything else reads them: their
/// size against [`MAX_ARGUMENT_BYTES`], and that they carry no known
/// secret value in any form the scrubber knows (a model that pasted a
/// credential, or was tricked into it, cannot hand it to a plugin).
///
/// # Errors
///
/// What is wrong, for `Error::InvalidArguments` on the whole value.
pub(crate) fn screen(text: &str, scrubber: &crate::secrets::Scrubber) -> Result<(), String> {
    if text.len() > MAX_ARGUMENT_BYTES {
        return Err(format!(
            "the arguments are {} bytes; the maximum is {MAX_ARGUMENT_BYTES} bytes",
            text.len()
        ));
    }
    if let Some(secret) = scrubber.find(text.as_bytes()) {
        return Err(format!(
            "the arguments carry the value of secret `{secret}`; secrets are attached by the host, never passed to a tool"
        ));
    }
    Ok(())
}

/// A compiled JSON Schema: a tool's input schema, or its output schema.
pub(crate) struct Schema {
    validator: jsonschema::Validator,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Schema")
    }
}

/// Refuses every external `$ref`: schemas must be self-contained.
struct NoRetrieval;

impl jsonschema::Retrieve for NoRetrieval {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!(
            "external schema references are not allowed (`{}`)",
            uri.as_str()
        )
        .into())
    }
}

impl Schema {
    pub(crate) fn compile(schema: &Value) -> Result<Schema, String> {
        if !schema.is_object() && !schema.is_boolean() {
            return Err("a JSON Schema must be an object or a boolean".into());
        }
        let validator = jsonschema::options()
            .with_retriever(NoRetrieval)
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(schema)
            .map_err(|e| e.to_string())?;
        Ok(Schema { validator })
    }

    /// Builds what every schema's compilation shares once per process
    /// (the meta-schema it is checked against, ~1 ms), so a thread can do
    /// it while plugins load.
    pub(crate) fn warm_up() {
        let _ = Schema::compile(&serde_json::json!({"type": "object"}));
    }

    /// Checks `value`; on failure returns the JSON Pointer of the first
    /// failing field and what is wrong with it.
    pub(crate) fn check(&self, value: &Value) -> Result<(), (String, String)> {
        // Stops at the first error (`iter_errors` would collect them all).
        self.validator
            .validate(value)
            .map_err(|e| (e.instance_path().to_string(), e.to_string()))
    }
}

/// Parses `text` as a JSON object, refusing duplicate keys at any depth.
pub(crate) fn parse_object(text: &str) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictValue
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err(format!(
            "arguments must be a JSON object, got {}",
            match value {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            }
        ));
    }
    Ok(value)
}

/// A `serde_json::Value` deserializer that refuses duplicate object keys.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Canonical JSON text of `value`: object keys sorted, no whitespace,
/// strings and numbers as serde_json writes them. Equal values give equal
/// text, whatever the key order or spacing of the input; approvals, the
/// audit log and the tool-list hash of each plugin hash this text.
pub(crate) fn canonical(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(&map[key], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(
            parse_object(r#"{"a": 1, "a": 2}"#)
                .expect_err("must be refused")
                .contains("duplicate key `a`")
        );
        assert!(parse_object(r#"{"x": {"b": 1, "b": 1}}"#).is_err());
        assert!(parse_object(r#"{"x": [{"b": 1, "b": 1}]}"#).is_err());
    }

    #[test]
    fn only_objects_are_arguments() {
        assert!(
            parse_object("[]")
                .expect_err("must be refused")
                .contains("an array")
        );
        assert!(parse_object("\"s\"").is_err());
        assert!(parse_object("{} {}").is_err());
        assert_eq!(
            parse_object(r#"{"a": [1, "b", null]}"#),
            Ok(json!({"a": [1, "b", null]}))
        );
    }

    #[test]
    fn validation_names_the_failing_field() {
        let schema = Schema::compile(&json!({
            "type": "object",
            "properties": { "path": { "type": "string" } },
            "required": ["path"]
        }))
        .expect("compiles");
        assert!(schema.check(&json!({"path": "a"})).is_ok());
        let (pointer, message) = schema
            .check(&json!({"path": 3}))
            .expect_err("must be refused");
        assert_eq!(pointer, "/path");
        assert!(message.contains("string"), "{message}");
        let (pointer, _) = schema.check(&json!({})).expect_err("must be refused");
        assert_eq!(pointer, "");
    }

    #[test]
    fn remote_and_file_refs_are_never_fetched() {
        for reference in ["http://127.0.0.1:9/schema.json", "file:///etc/passwd"] {
            let err = Schema::compile(&json!({ "$ref": reference })).expect_err("must be refused");
            assert!(err.contains("not allowed"), "{reference}: {err}");
        }
    }

    #[test]
    fn local_refs_still_work() {
        let schema = Schema::compile(&json!({
            "$defs": { "p": { "type": "string" } },
            "type": "object",
            "properties": { "path": { "$ref": "#/$defs/p" } }
        }))
        .expect("compiles");
        assert!(schema.check(&json!({"path": 1})).is_err());
    }

    #[test]
    fn backtracking_patterns_are_refused_or_linear() {
        // Look-around needs a backtracking engine; the linear-time engine
        // refuses it instead of risking catastrophic backtracking.
        let refused = Schema::compile(&json!({ "type": "string", "pattern": "(?=a)a" }));
        assert!(refused.is_err());
        let schema =
            Schema::compile(&json!({ "type": "string", "pattern": "^(a+)+$" })).expect("compiles");
        let hostile = format!("{}!", "a".repeat(50_000));
        assert!(schema.check(&json!(hostile)).is_err());
    }

    #[test]
    fn canonical_text_ignores_key_order_and_spacing() {
        let a = parse_object(r#"{ "b": [1, {"y": 2, "x": 1}], "a": "\u00e9" }"#).expect("parses");
        let b = parse_object(r#"{"a":"é","b":[1,{"x":1,"y":2}]}"#).expect("parses");
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&a), r#"{"a":"é","b":[1,{"x":1,"y":2}]}"#);
    }
}
