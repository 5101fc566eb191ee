//! Write [Portcullis](https://github.com/portcullis-dev/portcullis) tools in
//! plain Rust.
//!
//! A plugin is a type implementing [`Plugin`], exported with
//! [`export_plugin!`] and built for `wasm32-wasip2`:
//!
//! ```
//! use portcullis_sdk::{Args, Effect, Plugin, Tool, ToolError, json};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn tools() -> Vec<Tool> {
//!         vec![Tool::new("greet", "Greets someone by name.")
//!             .input_schema(json!({
//!                 "type": "object",
//!                 "properties": { "name": { "type": "string" } },
//!                 "required": ["name"],
//!             }))
//!             .effect(Effect::Read)]
//!     }
//!
//!     fn call(tool: &str, args: Args<'_>) -> Result<serde_json::Value, ToolError> {
//!         match tool {
//!             "greet" => {
//!                 #[derive(serde::Deserialize)]
//!                 struct Input { name: String }
//!                 let input: Input = args.parse()?;
//!                 Ok(json!({ "greeting": format!("hello, {}", input.name) }))
//!             }
//!             other => Err(ToolError::unknown_tool(other)),
//!         }
//!     }
//! }
//!
//! portcullis_sdk::export_plugin!(Hello);
//! ```
//!
//! The host validates arguments against each tool's input schema before the
//! plugin runs, gives the plugin only the directories its manifest grants,
//! and runs every call in a fresh instance: a plugin keeps no state between
//! calls.

pub use serde_json::{self, Value, json};

// Lets the generated bindings name this crate the same way from inside it as
// from a plugin crate.
extern crate self as portcullis_sdk;

/// Generated bindings for the `portcullis:tool` WIT package.
///
/// Plugins normally do not touch these; they are public so that
/// [`export_plugin!`] can reach them from the plugin's crate.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_bindings",
        default_bindings_module: "::portcullis_sdk::bindings",
        runtime_path: "::portcullis_sdk::__private::wit_bindgen::rt",
    });
}

use bindings::exports::portcullis::tool::tool as wit;

/// What running a tool can do to the world outside the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Only reads data.
    Read,
    /// Creates or changes data.
    Write,
    /// Deletes data or does something that cannot be undone.
    Destructive,
}

/// The description of one tool: what a model sees when choosing tools.
#[derive(Debug, Clone)]
pub struct Tool {
    name: String,
    title: Option<String>,
    description: String,
    input_schema: Value,
    output_schema: Option<Value>,
    effect: Effect,
}

impl Tool {
    /// A read-only tool taking an object with any properties.
    ///
    /// `name` must be 1-64 characters of `[a-z0-9_-]` starting with a letter;
    /// the host refuses the plugin otherwise.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Tool {
            name: name.into(),
            title: None,
            description: description.into(),
            input_schema: json!({ "type": "object" }),
            output_schema: None,
            effect: Effect::Read,
        }
    }

    /// Sets a short human-readable title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the JSON Schema that arguments must match.
    pub fn input_schema(mut self, schema: Value) -> Self {
        self.input_schema = schema;
        self
    }

    /// Sets the JSON Schema of the tool's output.
    pub fn output_schema(mut self, schema: Value) -> Self {
        self.output_schema = Some(schema);
        self
    }

    /// Declares what running the tool can do (default: [`Effect::Read`]).
    pub fn effect(mut self, effect: Effect) -> Self {
        self.effect = effect;
        self
    }
}

/// A failure a tool reports to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// The arguments made no sense to the tool.
    InvalidInput(String),
    /// Something the arguments named does not exist.
    NotFound(String),
    /// The tool refused, or a grant did not allow the action.
    Denied(String),
    /// The tool failed for a reason of its own.
    Internal(String),
}

impl ToolError {
    /// The error for a tool name the plugin does not offer.
    pub fn unknown_tool(name: &str) -> Self {
        ToolError::NotFound(format!("no tool named `{name}` in this plugin"))
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            ToolError::NotFound(m) => write!(f, "not found: {m}"),
            ToolError::Denied(m) => write!(f, "denied: {m}"),
            ToolError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for ToolError {}

/// The arguments of one call: a JSON object, already validated by the host
/// against the tool's input schema.
#[derive(Debug, Clone, Copy)]
pub struct Args<'a> {
    raw: &'a str,
}

impl<'a> Args<'a> {
    /// Deserializes the arguments into `T`.
    ///
    /// # Errors
    ///
    /// [`ToolError::InvalidInput`] when the arguments do not fit `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ToolError> {
        serde_json::from_str(self.raw).map_err(|e| ToolError::InvalidInput(e.to_string()))
    }

    /// The arguments exactly as the host passed them.
    pub fn raw(&self) -> &'a str {
        self.raw
    }
}

/// A plugin: a set of tools and the function that runs them.
///
/// Export the implementing type with [`export_plugin!`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` must implement `portcullis_sdk::Plugin` to be exported as a plugin"
)]
pub trait Plugin {
    /// The tools this plugin offers. Called once when the host loads it.
    fn tools() -> Vec<Tool>;

    /// Runs `tool` with `args` and returns its JSON output.
    ///
    /// # Errors
    ///
    /// A [`ToolError`] the caller sees as the tool's result.
    fn call(tool: &str, args: Args<'_>) -> Result<Value, ToolError>;
}

/// Messages to the host's per-call log. The host captures them (capped) and
/// attaches them to the call's result.
pub mod log {
    use crate::bindings::portcullis::tool::log::{Level, log};

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

/// Exports a [`Plugin`] implementation as this component's tools.
///
/// Use it once per plugin crate, at the crate root:
/// `portcullis_sdk::export_plugin!(MyPlugin);`
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            struct __PortcullisExport;

            impl $crate::bindings::exports::portcullis::tool::tool::Guest for __PortcullisExport {
                fn list_tools() -> ::std::vec::Vec<$crate::__private::WitToolSpec> {
                    $crate::__private::list_tools::<$plugin>()
                }

                fn call(
                    name: ::std::string::String,
                    arguments: ::std::string::String,
                ) -> ::std::result::Result<::std::string::String, $crate::__private::WitToolError>
                {
                    $crate::__private::call::<$plugin>(&name, &arguments)
                }
            }

            $crate::bindings::__export_plugin_bindings!(__PortcullisExport with_types_in $crate::bindings);
        };
    };
}

/// Support for [`export_plugin!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    pub use wit::{ToolError as WitToolError, ToolSpec as WitToolSpec};
    pub use wit_bindgen;

    pub fn list_tools<P: Plugin>() -> Vec<WitToolSpec> {
        P::tools()
            .into_iter()
            .map(|t| WitToolSpec {
                name: t.name,
                title: t.title,
                description: t.description,
                input_schema: t.input_schema.to_string(),
                output_schema: t.output_schema.map(|s| s.to_string()),
                effect: match t.effect {
                    Effect::Read => wit::Effect::Read,
                    Effect::Write => wit::Effect::Write,
                    Effect::Destructive => wit::Effect::Destructive,
                },
            })
            .collect()
    }

    pub fn call<P: Plugin>(name: &str, arguments: &str) -> Result<String, WitToolError> {
        match P::call(name, Args { raw: arguments }) {
            Ok(value) => Ok(value.to_string()),
            Err(ToolError::InvalidInput(m)) => Err(WitToolError::InvalidInput(m)),
            Err(ToolError::NotFound(m)) => Err(WitToolError::NotFound(m)),
            Err(ToolError::Denied(m)) => Err(WitToolError::Denied(m)),
            Err(ToolError::Internal(m)) => Err(WitToolError::Internal(m)),
        }
    }
}
