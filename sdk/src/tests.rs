//! The SDK natively: schemas from types, argument errors, tool listing.

use crate::prelude::*;
use crate::{Effect, ToolSet};

/// Input of `greet`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Greet {
    /// Who to greet.
    name: String,
    /// How many times (default 1).
    times: Option<u32>,
}

#[derive(Serialize, JsonSchema)]
struct Greeting {
    /// The greeting.
    text: String,
    /// Left out when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

fn greet(input: Greet) -> Result<Greeting, ToolError> {
    if input.name.is_empty() {
        return Err(ToolError::invalid_input("`name` is empty"));
    }
    Ok(Greeting {
        text: format!("Hello, {}!", input.name).repeat(input.times.unwrap_or(1) as usize),
        notes: Vec::new(),
    })
}

fn shout(input: Greet) -> Result<String, ToolError> {
    Ok(input.name.to_uppercase())
}

fn forget(_: NoInput) -> Result<Value, ToolError> {
    Err(ToolError::not_found("nobody to forget"))
}

fn echo(args: RawArgs) -> Result<String, ToolError> {
    Ok(args.0)
}

fn tools() -> ToolSet {
    crate::tool_set! {
        /// Greets someone by name.
        ///
        /// Second paragraph,
        /// on two lines.
        #[title = "Greet"]
        greet: read,
        /// Shouts a name.
        shout: write,
        /// Forgets everyone.
        forget: destructive,
        /// Returns its arguments.
        echo: read
    }
}

fn spec(name: &str) -> crate::ToolSpec {
    tools()
        .specs()
        .into_iter()
        .find(|s| s.name == name)
        .expect("tool is listed")
}

#[test]
fn macro_lists_every_tool_in_order_with_effect_title_and_description() {
    let specs = tools().specs();
    let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["greet", "shout", "forget", "echo"]);
    let effects: Vec<_> = specs.iter().map(|s| s.effect).collect();
    assert_eq!(
        effects,
        [
            Effect::Read,
            Effect::Write,
            Effect::Destructive,
            Effect::Read
        ]
    );
    assert_eq!(specs[0].title.as_deref(), Some("Greet"));
    assert_eq!(specs[1].title, None);
    assert_eq!(
        specs[0].description,
        "Greets someone by name.\n\nSecond paragraph, on two lines."
    );
    assert_eq!(specs[1].description, "Shouts a name.");
}

#[test]
fn input_schema_comes_from_the_input_type_with_doc_comments() {
    let schema = spec("greet").input_schema;
    assert_eq!(
        schema["$schema"],
        json!("https://json-schema.org/draft/2020-12/schema")
    );
    assert_eq!(schema["type"], json!("object"));
    assert_eq!(schema["description"], json!("Input of `greet`."));
    assert_eq!(schema["properties"]["name"]["type"], json!("string"));
    assert_eq!(
        schema["properties"]["name"]["description"],
        json!("Who to greet.")
    );
    assert_eq!(
        schema["properties"]["times"]["description"],
        json!("How many times (default 1).")
    );
    // Option fields are optional; the rest are required.
    assert_eq!(schema["required"], json!(["name"]));
    assert_eq!(schema["additionalProperties"], json!(false));
}

#[test]
fn schemas_are_self_contained() {
    #[derive(Deserialize, JsonSchema)]
    #[expect(dead_code, reason = "only the schema matters")]
    struct Inner {
        value: i64,
    }
    #[derive(Deserialize, JsonSchema)]
    #[expect(dead_code, reason = "only the schema matters")]
    struct Outer {
        first: Inner,
        second: Inner,
    }
    fn nested(_: Outer) -> Result<(), ToolError> {
        Ok(())
    }
    let set = crate::tool_set! {
        /// Nested types.
        nested: read,
    };
    let schema = &set.specs()[0].input_schema;
    let text = schema.to_string();
    // Every `$ref` points into this schema's own `$defs`.
    for (i, _) in text.match_indices("\"$ref\":\"") {
        assert!(text[i..].starts_with("\"$ref\":\"#/$defs/"), "{text}");
    }
    assert!(schema["$defs"]["Inner"].is_object(), "{text}");
}

#[test]
fn tools_without_arguments_take_an_empty_object() {
    let schema = spec("forget").input_schema;
    assert_eq!(schema["type"], json!("object"));
    assert_eq!(schema["additionalProperties"], json!(false));
    assert_eq!(
        tools().call("forget", "{}"),
        Err(ToolError::NotFound("nobody to forget".into()))
    );
}

#[test]
fn output_schema_is_declared_for_object_outputs_only() {
    let output = spec("greet")
        .output_schema
        .expect("greet declares its output");
    assert_eq!(
        output["properties"]["text"]["description"],
        json!("The greeting.")
    );
    // The schema describes what the output serializes to: a field left out
    // when empty is not required (the host validates real output with it).
    assert_eq!(output["required"], json!(["text"]));
    // A string is not an object; `Value` has no schema to speak of.
    assert_eq!(spec("shout").output_schema, None);
    assert_eq!(spec("forget").output_schema, None);
}

#[test]
fn calls_return_the_serialized_output() {
    assert_eq!(
        tools().call("greet", r#"{"name": "Ada", "times": 2}"#),
        Ok(r#"{"text":"Hello, Ada!Hello, Ada!"}"#.into())
    );
    assert_eq!(
        tools().call("shout", r#"{"name": "ada"}"#),
        Ok(r#""ADA""#.into())
    );
}

#[test]
fn arguments_that_do_not_fit_the_input_type_are_invalid_input_with_serde_message() {
    let err = tools()
        .call("greet", r#"{"name": 42}"#)
        .expect_err("wrong type");
    match err {
        ToolError::InvalidInput(m) => assert!(m.contains("invalid type"), "{m}"),
        other => panic!("expected invalid input, got {other:?}"),
    }
    let err = tools().call("greet", "{}").expect_err("missing field");
    assert_eq!(
        err,
        ToolError::InvalidInput("missing field `name` at line 1 column 2".into())
    );
    let err = tools()
        .call("greet", r#"{"name": "a", "nmae": "b"}"#)
        .expect_err("unknown field");
    assert!(err.message().contains("unknown field `nmae`"), "{err}");
}

#[test]
fn tool_errors_pass_through_with_their_kind() {
    assert_eq!(
        tools().call("greet", r#"{"name": ""}"#),
        Err(ToolError::InvalidInput("`name` is empty".into()))
    );
}

#[test]
fn raw_args_receive_the_exact_bytes() {
    let raw = "{ \"b\" : [1, 2.50],\n\t\"a\": null }";
    assert_eq!(
        tools().call("echo", raw),
        Ok(serde_json::to_string(raw).expect("string"))
    );
    assert_eq!(spec("echo").input_schema, json!({ "type": "object" }));
}

#[test]
fn unknown_tool_is_not_found() {
    let err = tools().call("nope", "{}").expect_err("unknown");
    assert_eq!(
        err,
        ToolError::NotFound("no tool named `nope` in this plugin".into())
    );
}

#[test]
fn io_errors_map_to_tool_error_kinds() {
    use std::io::{Error, ErrorKind};
    assert!(matches!(
        ToolError::from(Error::from(ErrorKind::NotFound)),
        ToolError::NotFound(_)
    ));
    assert!(matches!(
        ToolError::from(Error::from(ErrorKind::PermissionDenied)),
        ToolError::Denied(_)
    ));
    assert!(matches!(
        ToolError::from(Error::other("boom")),
        ToolError::Internal(_)
    ));
}
