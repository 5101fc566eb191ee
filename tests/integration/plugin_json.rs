//! The `json` example plugin through the real host: the path subset and
//! the transforms, with no grants at all.

use portcullis::{Effect, Error, Host, PluginConfig, ToolError};
use portcullis_tests::{call_value, plugin_path, plugin_sha, tool_error};
use serde_json::{Value, json};

async fn json_host() -> Host {
    Host::builder()
        .plugin(PluginConfig::new("json", plugin_path("json")).sha256(plugin_sha("json")))
        .build()
        .await
        .expect("json loads without grants")
}

async fn call(host: &Host, tool: &str, args: Value) -> Result<Value, Error> {
    call_value(host, &format!("json.{tool}"), args).await
}

fn doc() -> Value {
    json!({
        "store": {
            "name": "corner shop",
            "items": [
                {"id": 1, "name": "apple", "kind": "fruit", "price": 3},
                {"id": 2, "name": "leek", "kind": "vegetable", "price": 2},
                {"id": 3, "name": "pear", "kind": "fruit", "price": 4},
            ],
            "odd key": {"id": 9},
        }
    })
}

async fn query(host: &Host, path: &str) -> Value {
    call(host, "query", json!({"value": doc(), "path": path}))
        .await
        .unwrap_or_else(|e| panic!("query `{path}`: {e}"))["values"]
        .clone()
}

#[tokio::test]
async fn every_tool_is_a_read_tool_with_schemas() {
    let host = json_host().await;
    let mut names: Vec<String> = host.tools().into_iter().map(|t| t.tool).collect();
    names.sort_unstable();
    assert_eq!(names, ["keys", "length", "pick", "query", "select"]);
    for tool in host.tools() {
        assert_eq!(tool.effect, Effect::Read, "{}", tool.name);
        assert!(
            tool.input_schema["required"]
                .as_array()
                .is_some_and(|r| r.contains(&json!("value")))
        );
    }
}

#[tokio::test]
async fn query_supports_the_documented_path_subset() {
    let host = json_host().await;
    assert_eq!(query(&host, "$").await, json!([doc()]));
    assert_eq!(query(&host, "$.store.name").await, json!(["corner shop"]));
    assert_eq!(query(&host, "$['store']['odd key'].id").await, json!([9]));
    assert_eq!(
        query(&host, "$[\"store\"].items[0].name").await,
        json!(["apple"])
    );
    assert_eq!(
        query(&host, "$.store.items[-1].name").await,
        json!(["pear"])
    );
    assert_eq!(query(&host, "$.store.items[*].id").await, json!([1, 2, 3]));
    assert_eq!(
        query(&host, "$.store.items.*.price").await,
        json!([3, 2, 4])
    );
    assert_eq!(query(&host, "$..id").await, json!([1, 2, 3, 9]));
    assert_eq!(query(&host, "$.store.items[7]").await, json!([]));
    let out = call(
        &host,
        "query",
        json!({"value": doc(), "path": "$..items[1].name"}),
    )
    .await
    .expect("query");
    assert_eq!(out["paths"], json!(["$['store']['items'][1]['name']"]));
    assert_eq!(out["count"], json!(1));
}

#[tokio::test]
async fn invalid_paths_are_invalid_input_naming_the_position() {
    let host = json_host().await;
    for (path, expected) in [
        ("store.name", "starts with `$`"),
        ("$.store[", "at character 9"),
        ("$.items[1", "expected `]`"),
        ("$['unterminated]", "unterminated string"),
    ] {
        let err = tool_error(call(&host, "query", json!({"value": doc(), "path": path})).await);
        assert!(
            matches!(&err, ToolError::InvalidInput(m) if m.contains(expected)),
            "{path}: {err:?}"
        );
    }
}

#[tokio::test]
async fn keys_and_length_describe_the_selected_value() {
    let host = json_host().await;
    let keys = call(
        &host,
        "keys",
        json!({"value": doc(), "path": "$.store.items[0]"}),
    )
    .await
    .expect("keys");
    assert_eq!(keys, json!(["id", "kind", "name", "price"]));
    let indices = call(&host, "keys", json!({"value": [5, 6]}))
        .await
        .expect("keys of an array");
    assert_eq!(indices, json!([0, 1]));
    for (path, len) in [("$.store.items", 3), ("$.store", 3), ("$.store.name", 11)] {
        let out = call(&host, "length", json!({"value": doc(), "path": path}))
            .await
            .expect("length");
        assert_eq!(out, json!(len), "{path}");
    }
    let err = tool_error(call(&host, "length", json!({"value": 42})).await);
    assert!(matches!(err, ToolError::InvalidInput(_)), "{err:?}");
    let err = tool_error(call(&host, "keys", json!({"value": doc(), "path": "$..id"})).await);
    assert!(
        matches!(&err, ToolError::InvalidInput(m) if m.contains("selects 4 values")),
        "{err:?}"
    );
    let err = tool_error(call(&host, "keys", json!({"value": doc(), "path": "$.nope"})).await);
    assert!(matches!(err, ToolError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn pick_and_select_keep_the_asked_fields_and_elements() {
    let host = json_host().await;
    let picked = call(
        &host,
        "pick",
        json!({"value": doc(), "path": "$.store.items", "fields": ["name", "price", "missing"]}),
    )
    .await
    .expect("pick");
    assert_eq!(
        picked,
        json!([
            {"name": "apple", "price": 3},
            {"name": "leek", "price": 2},
            {"name": "pear", "price": 4},
        ])
    );
    let one = call(
        &host,
        "pick",
        json!({"value": {"a": 1, "b": 2}, "fields": ["b"]}),
    )
    .await
    .expect("pick from an object");
    assert_eq!(one, json!({"b": 2}));
    let fruit = call(
        &host,
        "select",
        json!({"value": doc(), "path": "$.store.items", "field": "kind", "equals": "fruit", "fields": ["id"]}),
    )
    .await
    .expect("select");
    assert_eq!(fruit, json!([{"id": 1}, {"id": 3}]));
    let err = tool_error(
        call(
            &host,
            "select",
            json!({"value": doc(), "path": "$.store", "field": "kind", "equals": "x"}),
        )
        .await,
    );
    assert!(matches!(err, ToolError::InvalidInput(_)), "{err:?}");
}
