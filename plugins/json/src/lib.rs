//! `json`: query and transform JSON passed in the arguments. Pure compute:
//! needs no grants.
//!
//! Build: `plugins/build.sh` (output in `plugins/dist/json.wasm`). See
//! README.md beside this file for the path syntax.

use portcullis_sdk::prelude::*;

mod path;

use path::{Node, Path};

portcullis_sdk::export_plugin! {
    /// Select values from a JSON document with a path: `$` is the whole
    /// document, `.field` or `['field']` a member, `[n]` an array element
    /// (`[-1]` is the last), `[*]` or `.*` every element or member, and
    /// `..field` every `field` at any depth. Returns the matching values and
    /// their normalized paths.
    #[title = "Query JSON"]
    query: read,
    /// The keys of the object (or the indices of the array) that `path`
    /// selects (default `$`, the whole document).
    #[title = "JSON keys"]
    keys: read,
    /// The length of the array, object (members) or string (characters)
    /// that `path` selects (default `$`).
    #[title = "JSON length"]
    length: read,
    /// Keep only some fields of the object, or of every object in the array,
    /// that `path` selects (default `$`). Missing fields are left out.
    #[title = "Pick JSON fields"]
    pick: read,
    /// The elements of the array that `path` selects (default `$`) whose
    /// `field` equals `equals`. With `fields`, keeps only those fields of
    /// each selected element.
    #[title = "Select JSON elements"]
    select: read,
}

/// A document and a path to query it with.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Query {
    /// The JSON document (any JSON value, not JSON text in a string).
    value: Value,
    /// The path, e.g. `$.items[*].name` or `$..id`.
    path: String,
}

/// The values a path selected.
#[derive(Serialize, JsonSchema)]
struct Matches {
    /// The matching values, in document order.
    values: Vec<Value>,
    /// Their normalized paths, e.g. `$['items'][0]['name']`.
    paths: Vec<String>,
    /// How many values matched.
    count: usize,
}

fn query(req: Query) -> Result<Matches, ToolError> {
    let path = Path::parse(&req.path).map_err(ToolError::invalid_input)?;
    let nodes = path.select(&req.value);
    Ok(Matches {
        count: nodes.len(),
        paths: nodes.iter().map(Node::path).collect(),
        values: nodes.into_iter().map(|n| n.value.clone()).collect(),
    })
}

/// A document and an optional path to one value in it.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Target {
    /// The JSON document (any JSON value).
    value: Value,
    /// Path to the value to work on (default `$`, the whole document); it
    /// must select exactly one value.
    path: Option<String>,
}

/// The one value `path` selects in `value`.
fn target<'v>(value: &'v Value, path: Option<&str>) -> Result<&'v Value, ToolError> {
    let text = path.unwrap_or("$");
    let nodes = Path::parse(text)
        .map_err(ToolError::invalid_input)?
        .select(value);
    match nodes.as_slice() {
        [one] => Ok(one.value),
        [] => Err(ToolError::not_found(format!(
            "`{text}` selects nothing in the document"
        ))),
        many => Err(ToolError::invalid_input(format!(
            "`{text}` selects {} values; this tool needs exactly one (use `query` for several)",
            many.len()
        ))),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn keys(req: Target) -> Result<Vec<Value>, ToolError> {
    match target(&req.value, req.path.as_deref())? {
        Value::Object(map) => Ok(map.keys().map(|k| Value::from(k.as_str())).collect()),
        Value::Array(items) => Ok((0..items.len()).map(Value::from).collect()),
        other => Err(ToolError::invalid_input(format!(
            "keys of {} do not exist: expected an object or an array",
            type_name(other)
        ))),
    }
}

fn length(req: Target) -> Result<usize, ToolError> {
    match target(&req.value, req.path.as_deref())? {
        Value::Object(map) => Ok(map.len()),
        Value::Array(items) => Ok(items.len()),
        Value::String(s) => Ok(s.chars().count()),
        other => Err(ToolError::invalid_input(format!(
            "{} has no length: expected an array, an object or a string",
            type_name(other)
        ))),
    }
}

/// Fields to keep.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Pick {
    /// The JSON document (any JSON value).
    value: Value,
    /// Path to an object or an array of objects (default `$`).
    path: Option<String>,
    /// The fields to keep.
    #[schemars(length(min = 1))]
    fields: Vec<String>,
}

/// `value` with only `fields`, if it is an object.
fn pick_fields(value: &Value, fields: &[String]) -> Result<Value, ToolError> {
    match value {
        Value::Object(map) => Ok(Value::Object(
            fields
                .iter()
                .filter_map(|f| map.get(f).map(|v| (f.clone(), v.clone())))
                .collect(),
        )),
        other => Err(ToolError::invalid_input(format!(
            "cannot pick fields from {}: expected an object",
            type_name(other)
        ))),
    }
}

fn pick(req: Pick) -> Result<Value, ToolError> {
    match target(&req.value, req.path.as_deref())? {
        Value::Array(items) => items
            .iter()
            .map(|item| pick_fields(item, &req.fields))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => pick_fields(other, &req.fields),
    }
}

/// A filter over an array of objects.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Select {
    /// The JSON document (any JSON value).
    value: Value,
    /// Path to an array (default `$`).
    path: Option<String>,
    /// The field to compare in each element.
    field: String,
    /// The value the field must equal (any JSON value).
    equals: Value,
    /// Keep only these fields of each selected element (default: all).
    fields: Option<Vec<String>>,
}

fn select(req: Select) -> Result<Vec<Value>, ToolError> {
    let items = match target(&req.value, req.path.as_deref())? {
        Value::Array(items) => items,
        other => {
            return Err(ToolError::invalid_input(format!(
                "cannot select from {}: expected an array",
                type_name(other)
            )));
        }
    };
    items
        .iter()
        .filter(|item| item.get(&req.field) == Some(&req.equals))
        .map(|item| match &req.fields {
            Some(fields) => pick_fields(item, fields),
            None => Ok(item.clone()),
        })
        .collect()
}
