//! `{{name}}`: a Portcullis tool plugin. Build it with `./build.sh`.

use portcullis_sdk::prelude::*;

/// Who to greet.
#[derive(Deserialize, JsonSchema)]
struct Greet {
    /// The name of the person to greet.
    name: String,
}

fn greet(input: Greet) -> Result<String, ToolError> {
    if input.name.trim().is_empty() {
        return Err(ToolError::invalid_input("`name` is empty"));
    }
    Ok(format!("Hello, {}!", input.name))
}

portcullis_sdk::export_plugin! {
    /// Greets someone by name.
    greet: read,
}
