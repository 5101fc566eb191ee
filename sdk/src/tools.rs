//! Tools as plain functions: typed input, typed output, a declared effect.
//!
//! Everything here is independent of the WIT bindings, so it runs (and is
//! tested) natively.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::marker::PhantomData;

/// What running a tool can do to the world outside the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Only reads data; running it twice changes nothing.
    Read,
    /// Creates or changes data.
    Write,
    /// Deletes data or does something that cannot be undone.
    Destructive,
}

/// A failure a tool reports to its caller, with a message for the model.
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
    /// [`ToolError::InvalidInput`] with `message`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        ToolError::InvalidInput(message.into())
    }

    /// [`ToolError::NotFound`] with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ToolError::NotFound(message.into())
    }

    /// [`ToolError::Denied`] with `message`.
    pub fn denied(message: impl Into<String>) -> Self {
        ToolError::Denied(message.into())
    }

    /// [`ToolError::Internal`] with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        ToolError::Internal(message.into())
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            ToolError::InvalidInput(m)
            | ToolError::NotFound(m)
            | ToolError::Denied(m)
            | ToolError::Internal(m) => m,
        }
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

/// I/O errors by kind: not found, denied (permissions, read-only), or
/// internal. Tools usually add the path with their own message instead.
impl From<std::io::Error> for ToolError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::NotFound => ToolError::NotFound(e.to_string()),
            ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
                ToolError::Denied(e.to_string())
            }
            _ => ToolError::Internal(e.to_string()),
        }
    }
}

/// What a tool function can take as input: its JSON Schema and how to read
/// it from the call's arguments.
///
/// Implemented for every type that derives `Deserialize` and `JsonSchema`,
/// and for [`RawArgs`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a tool's input: derive `Deserialize` and `JsonSchema` for it"
)]
pub trait ToolInput: Sized {
    /// The JSON Schema the host validates arguments against.
    fn input_schema() -> Value;

    /// Reads the arguments (a JSON object as text).
    ///
    /// # Errors
    ///
    /// [`ToolError::InvalidInput`] with serde's message when they do not fit.
    fn from_args(args: &str) -> Result<Self, ToolError>;
}

impl<T: DeserializeOwned + JsonSchema> ToolInput for T {
    fn input_schema() -> Value {
        schema_of::<T>()
    }

    fn from_args(args: &str) -> Result<Self, ToolError> {
        serde_json::from_str(args).map_err(|e| ToolError::InvalidInput(e.to_string()))
    }
}

/// The input of a tool that takes no arguments: an empty object.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

/// The call's arguments exactly as the host passed them (already validated
/// against the schema `{"type": "object"}`), for tools that parse them
/// themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawArgs(pub String);

impl ToolInput for RawArgs {
    fn input_schema() -> Value {
        serde_json::json!({ "type": "object" })
    }

    fn from_args(args: &str) -> Result<Self, ToolError> {
        Ok(RawArgs(args.to_owned()))
    }
}

/// The draft 2020-12 schema of what `T` deserializes from (tool
/// arguments), self-contained (local `$defs` only).
fn schema_of<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// The draft 2020-12 schema of what `T` serializes to (tool output): a
/// field with `skip_serializing_if` is optional here even when it has no
/// default.
fn output_schema_of<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// A function the macros can export as a tool:
/// `fn(Input) -> Result<Output, ToolError>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tool function: a tool is `fn(Input) -> Result<Output, ToolError>` with `Input: Deserialize + JsonSchema` and `Output: Serialize`",
    label = "not `fn(Input) -> Result<Output, ToolError>`"
)]
pub trait ToolFn<I, O> {
    /// Runs the tool.
    ///
    /// # Errors
    ///
    /// Whatever the tool reports.
    fn run_tool(&self, input: I) -> Result<O, ToolError>;
}

impl<F, I, O> ToolFn<I, O> for F
where
    F: Fn(I) -> Result<O, ToolError>,
    I: ToolInput,
    O: Serialize,
{
    fn run_tool(&self, input: I) -> Result<O, ToolError> {
        self(input)
    }
}

/// Parses the arguments, runs `tool` and serializes its output.
///
/// # Errors
///
/// [`ToolError::InvalidInput`] for arguments that do not fit the input type,
/// the tool's own errors, and [`ToolError::Internal`] if the output cannot
/// be serialized.
pub fn run<F: ToolFn<I, O>, I: ToolInput, O: Serialize>(
    tool: &F,
    args: &str,
) -> Result<String, ToolError> {
    let input = I::from_args(args)?;
    let output = tool.run_tool(input)?;
    serde_json::to_string(&output)
        .map_err(|e| ToolError::Internal(format!("the output is not JSON: {e}")))
}

/// The input schema of a tool function.
pub fn input_schema_of<F: ToolFn<I, O>, I: ToolInput, O: Serialize>(_tool: &F) -> Value {
    I::input_schema()
}

/// Names the output type of a tool function, to ask whether it has a
/// schema (autoref specialization: [`HasOutputSchema`] wins when `O:
/// JsonSchema`, [`NoOutputSchema`] is the fallback).
#[derive(Debug)]
pub struct OutputProbe<O>(PhantomData<O>);

/// The probe for `tool`'s output type.
pub fn output_probe<F: ToolFn<I, O>, I: ToolInput, O: Serialize>(_tool: &F) -> OutputProbe<O> {
    OutputProbe(PhantomData)
}

/// The output has a schema.
pub trait HasOutputSchema {
    /// The output schema, if it describes a JSON object (MCP requires that
    /// of an output schema).
    fn output_schema(&self) -> Option<Value>;
}

impl<O: JsonSchema> HasOutputSchema for OutputProbe<O> {
    fn output_schema(&self) -> Option<Value> {
        let schema = output_schema_of::<O>();
        (schema.get("type") == Some(&Value::from("object"))).then_some(schema)
    }
}

/// The output has no schema.
pub trait NoOutputSchema {
    /// None.
    fn output_schema(&self) -> Option<Value>;
}

impl<O> NoOutputSchema for &OutputProbe<O> {
    fn output_schema(&self) -> Option<Value> {
        None
    }
}

/// Fails compilation (through const evaluation) unless `name` is a valid
/// tool name: 1-64 characters of `a-z`, `0-9`, `_` and `-`, starting with a
/// letter.
pub const fn check_tool_name(name: &str) {
    let bytes = name.as_bytes();
    let valid_start = !bytes.is_empty() && bytes[0].is_ascii_lowercase();
    assert!(
        valid_start && bytes.len() <= 64,
        "a tool name must be 1-64 characters starting with a lowercase letter"
    );
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        assert!(
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-',
            "a tool name may use only `a-z`, `0-9`, `_` and `-`"
        );
        i += 1;
    }
}

/// One exported tool, as the macros build it.
#[derive(Debug)]
pub struct ToolEntry {
    /// Tool name.
    pub name: &'static str,
    /// The lines of its doc comment.
    pub doc: &'static [&'static str],
    /// Optional title.
    pub title: Option<&'static str>,
    /// Declared effect.
    pub effect: Effect,
    /// Its input schema.
    pub input_schema: fn() -> Value,
    /// Its output schema, if any.
    pub output_schema: fn() -> Option<Value>,
    /// Runs it on arguments (JSON text), returning JSON text.
    pub call: fn(&str) -> Result<String, ToolError>,
}

/// The description of one tool: what a model sees when choosing tools.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Tool name, unique within the plugin.
    pub name: String,
    /// Short human-readable title.
    pub title: Option<String>,
    /// What the tool does (the doc comment).
    pub description: String,
    /// JSON Schema of the arguments.
    pub input_schema: Value,
    /// JSON Schema of the output, if declared.
    pub output_schema: Option<Value>,
    /// What running the tool can do.
    pub effect: Effect,
}

/// The tools of a plugin, as built by [`tool_set!`](crate::tool_set) (and by
/// [`export_plugin!`](crate::export_plugin), which exports them). Use it to
/// test tools natively, the way the host will call them.
#[derive(Debug, Clone, Copy)]
pub struct ToolSet {
    entries: &'static [ToolEntry],
}

impl ToolSet {
    #[doc(hidden)]
    pub const fn new(entries: &'static [ToolEntry]) -> Self {
        ToolSet { entries }
    }

    /// The tools, in declaration order.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.entries
            .iter()
            .map(|e| ToolSpec {
                name: e.name.to_owned(),
                title: e.title.map(str::to_owned),
                description: description(e.doc),
                input_schema: (e.input_schema)(),
                output_schema: (e.output_schema)(),
                effect: e.effect,
            })
            .collect()
    }

    /// Runs tool `name` on `args` (a JSON object as text) and returns its
    /// output as JSON text.
    ///
    /// # Errors
    ///
    /// [`ToolError::NotFound`] for a name no tool has, otherwise whatever
    /// the tool reports.
    pub fn call(&self, name: &str, args: &str) -> Result<String, ToolError> {
        match self.entries.iter().find(|e| e.name == name) {
            Some(entry) => (entry.call)(args),
            None => Err(ToolError::NotFound(format!(
                "no tool named `{name}` in this plugin"
            ))),
        }
    }
}

/// A doc comment as a description: one leading space dropped per line,
/// lines of a paragraph joined with spaces, paragraphs kept apart.
fn description(doc: &[&str]) -> String {
    let mut out = String::new();
    let mut blank = false;
    for line in doc.iter().flat_map(|l| l.split('\n')) {
        let line = line.strip_prefix(' ').unwrap_or(line).trim_end();
        if line.trim().is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push_str("\n\n");
        } else if !out.is_empty() {
            out.push(' ');
        }
        blank = false;
        out.push_str(line);
    }
    out
}

/// Builds a [`ToolSet`] from tool functions, each with a doc comment (its
/// description), an optional `#[title = "..."]`, and an effect. Same syntax
/// as [`export_plugin!`](crate::export_plugin), without exporting anything:
/// use it to test tools natively.
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
/// let tools = portcullis_sdk::tool_set! {
///     /// Greets someone by name.
///     greet: read,
/// };
/// assert_eq!(tools.call("greet", r#"{"name": "Ada"}"#), Ok(r#""Hello, Ada!""#.into()));
/// ```
#[macro_export]
macro_rules! tool_set {
    ($($input:tt)*) => {
        $crate::__tool_set!(@parse [] $($input)*)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __tool_set {
    // All entries parsed.
    (@parse [$($done:tt)*]) => {
        $crate::__tool_set!(@emit $($done)*)
    };
    // `/// doc` `#[title = "..."]`? `name: effect`
    (@parse [$($done:tt)*]
        $(#[doc = $doc:literal])+
        $(#[title = $title:literal])?
        $name:ident : $effect:ident
        $(, $($rest:tt)*)?
    ) => {
        $crate::__tool_set!(@parse [$($done)* { [$($doc)+] [$($title)?] $name $effect }] $($($rest)*)?)
    };
    // Mistakes, each with its own message.
    (@parse [$($done:tt)*] $(#[title = $title:literal])? $name:ident : $effect:ident $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "tool `", ::core::stringify!($name),
            "` needs a description: write a `///` doc comment above `",
            ::core::stringify!($name), ": ", ::core::stringify!($effect), "`"
        ))
    };
    (@parse [$($done:tt)*] $(#[$attr:meta])* $name:ident $(, $($rest:tt)*)?) => {
        ::core::compile_error!(::core::concat!(
            "tool `", ::core::stringify!($name),
            "` needs an effect: write `", ::core::stringify!($name),
            ": read`, `: write` or `: destructive`"
        ))
    };
    (@parse [$($done:tt)*] $($other:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "expected `/// description` then `tool_function: effect,` (effect: read, write or destructive), found `",
            ::core::stringify!($($other)*), "`"
        ))
    };
    (@emit $({ [$($doc:literal)+] [$($title:literal)?] $name:ident $effect:ident })*) => {{
        // A tool name used twice is an error here: "the name `x` is defined
        // multiple times".
        #[allow(non_camel_case_types, dead_code)]
        enum __PortcullisToolNames { $($name,)* }
        $(const _: () = $crate::__private::check_tool_name(::core::stringify!($name));)*
        static __PORTCULLIS_TOOLS: &[$crate::__private::ToolEntry] = &[$(
            $crate::__private::ToolEntry {
                name: ::core::stringify!($name),
                doc: &[$($doc),+],
                title: $crate::__tool_set!(@title $($title)?),
                effect: $crate::__tool_set!(@effect $effect),
                input_schema: || $crate::__private::input_schema_of(&$name),
                output_schema: || {
                    #[allow(unused_imports)]
                    use $crate::__private::{HasOutputSchema as _, NoOutputSchema as _};
                    (&$crate::__private::output_probe(&$name)).output_schema()
                },
                call: |args| $crate::__private::run(&$name, args),
            },
        )*];
        $crate::ToolSet::new(__PORTCULLIS_TOOLS)
    }};
    (@title) => { ::core::option::Option::None };
    (@title $title:literal) => { ::core::option::Option::Some($title) };
    (@effect read) => { $crate::Effect::Read };
    (@effect write) => { $crate::Effect::Write };
    (@effect destructive) => { $crate::Effect::Destructive };
    (@effect $other:ident) => {
        ::core::compile_error!(::core::concat!(
            "unknown effect `", ::core::stringify!($other),
            "`: use `read`, `write` or `destructive`"
        ))
    };
}

/// Misusing the macros is a compile error. The cases below are compiled (and
/// must fail) as doctests; the messages are in the macro above.
///
/// A control that compiles:
/// ```
/// use portcullis_sdk::prelude::*;
/// fn greet(_: NoInput) -> Result<String, ToolError> { Ok("hi".into()) }
/// let _tools = portcullis_sdk::tool_set! { /// Greets.
///     greet: read };
/// ```
///
/// No description:
/// ```compile_fail
/// use portcullis_sdk::prelude::*;
/// fn greet(_: NoInput) -> Result<String, ToolError> { Ok("hi".into()) }
/// let _tools = portcullis_sdk::tool_set! { greet: read };
/// ```
///
/// No effect:
/// ```compile_fail
/// use portcullis_sdk::prelude::*;
/// fn greet(_: NoInput) -> Result<String, ToolError> { Ok("hi".into()) }
/// let _tools = portcullis_sdk::tool_set! { /// Greets.
///     greet };
/// ```
///
/// An unknown effect:
/// ```compile_fail
/// use portcullis_sdk::prelude::*;
/// fn greet(_: NoInput) -> Result<String, ToolError> { Ok("hi".into()) }
/// let _tools = portcullis_sdk::tool_set! { /// Greets.
///     greet: harmless };
/// ```
///
/// A tool used twice:
/// ```compile_fail
/// use portcullis_sdk::prelude::*;
/// fn greet(_: NoInput) -> Result<String, ToolError> { Ok("hi".into()) }
/// let _tools = portcullis_sdk::tool_set! { /// Greets.
///     greet: read, /// Again.
///     greet: read };
/// ```
///
/// A function with the wrong shape:
/// ```compile_fail
/// use portcullis_sdk::prelude::*;
/// fn greet(name: String, loud: bool) -> String { name }
/// let _tools = portcullis_sdk::tool_set! { /// Greets.
///     greet: read };
/// ```
#[doc(hidden)]
pub mod misuse_is_a_compile_error {}
