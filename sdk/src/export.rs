//! The WIT side: [`export_plugin!`](crate::export_plugin) turns a
//! [`ToolSet`] into the component's `portcullis:tool/tool` export.

use crate::bindings::exports::portcullis::tool::tool as wit;
use crate::{Effect, ToolError, ToolSet};

pub use wit::{ToolError as WitToolError, ToolSpec as WitToolSpec};

/// The tool list as the host reads it.
pub fn list_tools(tools: &ToolSet) -> Vec<WitToolSpec> {
    tools
        .specs()
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

/// Runs one call.
///
/// # Errors
///
/// The tool's error, as the WIT variant.
pub fn call(tools: &ToolSet, name: &str, arguments: &str) -> Result<String, WitToolError> {
    tools.call(name, arguments).map_err(|e| match e {
        ToolError::InvalidInput(m) => WitToolError::InvalidInput(m),
        ToolError::NotFound(m) => WitToolError::NotFound(m),
        ToolError::Denied(m) => WitToolError::Denied(m),
        ToolError::Internal(m) => WitToolError::Internal(m),
    })
}

/// Exports tool functions as this component's tools. Use it once per plugin
/// crate, at the crate root.
///
/// Each entry is a doc comment (the description a model reads), an optional
/// `#[title = "..."]`, the function's name (also the tool's name: `a-z`,
/// `0-9`, `_`, `-`) and its effect: `read`, `write` or `destructive`.
///
/// ```
/// use portcullis_sdk::prelude::*;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct Greet {
///     /// Who to greet.
///     name: String,
/// }
///
/// fn greet(input: Greet) -> Result<String, ToolError> {
///     Ok(format!("Hello, {}!", input.name))
/// }
///
/// fn forget(_: NoInput) -> Result<(), ToolError> {
///     Ok(())
/// }
///
/// portcullis_sdk::export_plugin! {
///     /// Greets someone by name.
///     #[title = "Greet"]
///     greet: read,
///     /// Forgets everyone.
///     forget: destructive,
/// }
/// # fn main() {}
/// ```
///
/// A tool function has the shape `fn(Input) -> Result<Output, ToolError>`;
/// anything else, a missing description or effect, or a name used twice is
/// a compile error saying so.
#[macro_export]
macro_rules! export_plugin {
    ($($input:tt)*) => {
        const _: () = {
            #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
            struct __PortcullisExport;

            #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
            static __PORTCULLIS_TOOL_SET: $crate::ToolSet = $crate::tool_set!($($input)*);

            impl $crate::bindings::exports::portcullis::tool::tool::Guest for __PortcullisExport {
                fn list_tools() -> ::std::vec::Vec<$crate::__private::WitToolSpec> {
                    $crate::__private::list_tools(&__PORTCULLIS_TOOL_SET)
                }

                fn call(
                    name: ::std::string::String,
                    arguments: ::std::string::String,
                ) -> ::std::result::Result<::std::string::String, $crate::__private::WitToolError>
                {
                    $crate::__private::call(&__PORTCULLIS_TOOL_SET, &name, &arguments)
                }
            }

            // Only a component exports the WIT functions: their symbol names
            // (`portcullis:tool/tool@0.1.0#call`) do not link natively, and a
            // native build of a plugin crate (`cargo build --workspace`) is
            // for checking and testing it.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::__export_plugin_bindings!(__PortcullisExport with_types_in $crate::bindings);
        };
    };
}
