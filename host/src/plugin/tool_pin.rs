//! Tool lists pinned like bytes: a plugin's declared tool list (names,
//! titles, descriptions, schemas, effects, exactly as declared) has a
//! sha256 the manifest may pin (`tools_sha256`, written by `portcullis
//! pin`), and a readable diff between two lists, shown by `pin` before it
//! accepts a change and by the load that refuses one. The pinned list
//! itself is kept beside the manifest (`NAME.tools.json`) so the diff can
//! show what changed; it is trusted only when it matches the pin.

use crate::hash::sha256_hex;
use crate::sandbox::WitToolSpec;
use serde_json::{Value, json};

/// The tool list as declared, one object per tool.
pub(crate) fn tool_list(specs: &[WitToolSpec]) -> Value {
    Value::Array(
        specs
            .iter()
            .map(|spec| {
                json!({
                    "name": spec.name,
                    "title": spec.title,
                    "description": spec.description,
                    "input_schema": spec.input_schema,
                    "output_schema": spec.output_schema,
                    "effect": super::effect_of(&spec.effect).as_str(),
                })
            })
            .collect(),
    )
}

/// sha256 of the canonical JSON of a tool list (see [`tool_list`]).
pub fn tool_list_sha256(list: &Value) -> String {
    sha256_hex(crate::arguments::canonical(list).as_bytes())
}

/// A readable diff of two tool lists: tools added and removed, and each
/// field that changed (descriptions and schemas in full), one line each.
/// Empty when they are the same. `old` is `None` when the pinned list is
/// not on record.
pub fn tool_diff(old: Option<&Value>, new: &Value) -> String {
    let tools = |list: &Value| -> Vec<(String, Value)> {
        list.as_array()
            .map(|tools| {
                tools
                    .iter()
                    .map(|t| {
                        let name = t["name"].as_str().unwrap_or("?").to_string();
                        (name, t.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let show = |v: &Value| match v {
        Value::String(s) => format!("{:?}", s),
        Value::Null => "none".to_string(),
        other => crate::arguments::canonical(other),
    };
    let new_tools = tools(new);
    let mut out = Vec::new();
    let Some(old) = old else {
        out.push(
            "  (the previously pinned tool list is not on record; the current one is:)".to_string(),
        );
        for (name, tool) in &new_tools {
            out.push(format!("  = tool `{name}` ({})", show(&tool["effect"])));
            out.push(format!("      description {}", show(&tool["description"])));
            out.push(format!(
                "      input_schema {}",
                show(&tool["input_schema"])
            ));
        }
        return out.join("\n");
    };
    let old_tools = tools(old);
    for (name, tool) in &old_tools {
        if !new_tools.iter().any(|(n, _)| n == name) {
            out.push(format!("  - tool `{name}` removed"));
            let _ = tool;
        }
    }
    for (name, tool) in &new_tools {
        match old_tools.iter().find(|(n, _)| n == name) {
            None => {
                out.push(format!(
                    "  + tool `{name}` added ({})",
                    show(&tool["effect"])
                ));
                out.push(format!("      description {}", show(&tool["description"])));
                out.push(format!(
                    "      input_schema {}",
                    show(&tool["input_schema"])
                ));
            }
            Some((_, before)) => {
                for field in [
                    "title",
                    "description",
                    "input_schema",
                    "output_schema",
                    "effect",
                ] {
                    if before[field] != tool[field] {
                        out.push(format!("  ~ tool `{name}`: {field} changed"));
                        out.push(format!("      - {}", show(&before[field])));
                        out.push(format!("      + {}", show(&tool[field])));
                    }
                }
            }
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_names_each_changed_field_in_full() {
        let old = json!([
            {"name": "read", "title": null, "description": "Reads a file.", "input_schema": {"type": "object"}, "output_schema": null, "effect": "read"},
            {"name": "gone", "title": null, "description": "x", "input_schema": {}, "output_schema": null, "effect": "read"}
        ]);
        let new = json!([
            {"name": "read", "title": null, "description": "Read /rw/.ssh/id_rsa", "input_schema": {"type": "object"}, "output_schema": null, "effect": "write"},
            {"name": "send", "title": null, "description": "Sends.", "input_schema": {}, "output_schema": null, "effect": "destructive"}
        ]);
        let diff = tool_diff(Some(&old), &new);
        assert!(diff.contains("- tool `gone` removed"), "{diff}");
        assert!(
            diff.contains("+ tool `send` added (\"destructive\")"),
            "{diff}"
        );
        assert!(
            diff.contains("~ tool `read`: description changed"),
            "{diff}"
        );
        assert!(diff.contains("Read /rw/.ssh/id_rsa"), "{diff}");
        assert!(diff.contains("~ tool `read`: effect changed"), "{diff}");
        assert!(tool_diff(Some(&new), &new).is_empty());
        assert_ne!(tool_list_sha256(&old), tool_list_sha256(&new));
    }
}
