//! Write [Portcullis](https://github.com/portcullis-dev/portcullis) tools in
//! plain Rust.
//!
//! A tool is a function from a typed input to a typed output. The input
//! type derives [`Deserialize`](serde::Deserialize) and
//! [`JsonSchema`](schemars::JsonSchema): its JSON Schema, with doc comments
//! as descriptions, is what the host validates arguments against and what a
//! model sees. One macro, [`export_plugin!`], exports the tools, each with
//! its description (a doc comment) and its effect (`read`, `write` or
//! `destructive`):
//!
//! ```
//! use portcullis_sdk::prelude::*;
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Greet {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! fn greet(input: Greet) -> Result<String, ToolError> {
//!     Ok(format!("Hello, {}!", input.name))
//! }
//!
//! portcullis_sdk::export_plugin! {
//!     /// Greets someone by name.
//!     greet: read,
//! }
//! # fn main() {}
//! ```
//!
//! The plugin crate is a `cdylib` built for `wasm32-wasip2` and depends on
//! `portcullis-sdk`, `serde` and `schemars` (the derives name those crates);
//! `portcullis new NAME` writes one with its build script, manifest and
//! tests file. The component implements the `portcullis:tool` world
//! `plugin`, whose WIT this crate carries in its own `wit/` folder.
//!
//! - Arguments that do not fit the input type become
//!   [`ToolError::InvalidInput`] with serde's message; the tool does not run.
//! - The output is serialized to JSON. When the output type implements
//!   `JsonSchema` and is a JSON object, its schema is declared as the tool's
//!   output schema.
//! - A tool without arguments takes [`NoInput`]; one that needs the exact
//!   bytes it was called with takes [`RawArgs`].
//! - [`tool_set!`] builds the same tool list as a value, to test tools
//!   natively without a host.
//!
//! [`http`] sends requests through the host's egress gate, to the
//! destinations the plugin's manifest entry grants.
//!
//! The host validates arguments against each tool's input schema before the
//! plugin runs, gives the plugin only the directories its manifest grants,
//! and runs every call in a fresh instance: a plugin keeps no state between
//! calls.

pub use schemars;
pub use serde;
pub use serde_json::{self, Value, json};

// Lets the generated bindings name this crate the same way from inside it as
// from a plugin crate.
extern crate self as portcullis_sdk;

mod export;
pub mod http;
mod tools;

pub use tools::{Effect, NoInput, RawArgs, ToolError, ToolInput, ToolSet, ToolSpec};

/// Everything a plugin usually needs: `use portcullis_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{NoInput, RawArgs, ToolError, log};
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::{Value, json};
}

/// Generated bindings for the `portcullis:tool` WIT package.
///
/// Plugins never touch these; they are public so that [`export_plugin!`]
/// can reach them from the plugin's crate.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_bindings",
        default_bindings_module: "::portcullis_sdk::bindings",
        runtime_path: "::portcullis_sdk::__private::wit_bindgen::rt",
    });
}

/// Messages to the host's per-call log. The host captures them (capped) and
/// attaches them to the call's result; they never reach the host's own
/// output.
pub mod log {
    use crate::bindings::portcullis::tool::log::{Level, log};

    /// Logs at trace level.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// Support for the macros; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{WitToolError, WitToolSpec, call, list_tools};
    pub use crate::tools::{
        HasOutputSchema, NoOutputSchema, OutputProbe, ToolEntry, ToolFn, check_tool_name,
        input_schema_of, output_probe, run,
    };
    pub use wit_bindgen;
}

#[cfg(test)]
mod tests;
