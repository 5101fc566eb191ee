//! Loading a plugin: read the bytes once, check the pin, compile exactly
//! those bytes, refuse forbidden imports, and ask the plugin for its tools.

use crate::arguments::InputSchema;
use crate::error::Error;
use crate::policy::{self, PluginPolicy};
use crate::sandbox::{PluginPre, Request, Response, Sandbox, StoreData, WitEffect};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Longest tool description the host accepts from a plugin.
const MAX_DESCRIPTION_BYTES: usize = 8 * 1024;
/// Longest schema (JSON text) the host accepts from a plugin.
const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Most tools one plugin may offer.
const MAX_TOOLS: usize = 128;

/// What running a tool can do to the world outside the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Effect {
    /// Only reads data.
    Read,
    /// Creates or changes data.
    Write,
    /// Deletes data or does something irreversible.
    Destructive,
}

impl Effect {
    /// `read`, `write` or `destructive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Read => "read",
            Effect::Write => "write",
            Effect::Destructive => "destructive",
        }
    }
}

/// One tool as the plugin declared it, checked by the host.
#[derive(Debug, Clone)]
pub(crate) struct ToolDef {
    pub(crate) name: String,
    pub(crate) title: Option<String>,
    pub(crate) description: String,
    pub(crate) input_schema: serde_json::Value,
    pub(crate) output_schema: Option<serde_json::Value>,
    pub(crate) effect: Effect,
    pub(crate) validator: Arc<InputSchema>,
}

/// A loaded, pinned, type-checked plugin, ready to instantiate per call.
pub(crate) struct LoadedPlugin {
    pub(crate) policy: PluginPolicy,
    pub(crate) pre: PluginPre<StoreData>,
    pub(crate) tools: Vec<ToolDef>,
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl LoadedPlugin {
    pub(crate) async fn load(
        sandbox: &Sandbox,
        policy: PluginPolicy,
    ) -> Result<LoadedPlugin, Error> {
        let name = policy.name.clone();
        // Read once; everything below uses these bytes, never the path.
        let bytes = std::fs::read(&policy.source).map_err(|source| Error::PluginRead {
            plugin: name.clone(),
            path: policy.source.clone(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if actual != policy.sha256 {
            return Err(Error::PinMismatch {
                plugin: name,
                path: policy.source.clone(),
                expected: policy.sha256.clone(),
                actual,
            });
        }
        let component = sandbox
            .compile(&bytes)
            .map_err(|reason| Error::InvalidComponent {
                plugin: name.clone(),
                path: policy.source.clone(),
                reason,
            })?;
        drop(bytes);

        let forbidden = sandbox.forbidden_imports(&component);
        if !forbidden.is_empty() {
            return Err(Error::ForbiddenImports {
                plugin: name,
                imports: forbidden,
            });
        }
        let pre = sandbox
            .prepare(&component)
            .map_err(|reason| Error::InvalidPlugin {
                plugin: name.clone(),
                reason,
            })?;

        let run = sandbox
            .run(&pre, &policy, Request::ListTools, &CancellationToken::new())
            .await;
        let specs = match run.result {
            Ok(Response::Tools(specs)) => specs,
            Ok(_) => {
                return Err(Error::Internal(format!(
                    "plugin `{name}`: `list-tools` produced a call response"
                )));
            }
            Err(failure) => {
                return Err(Error::InvalidPlugin {
                    plugin: name,
                    reason: format!("`list-tools` failed: {failure}"),
                });
            }
        };
        let tools = check_tools(&name, specs)?;
        Ok(LoadedPlugin { policy, pre, tools })
    }
}

fn check_tools(
    plugin: &str,
    specs: Vec<crate::sandbox::WitToolSpec>,
) -> Result<Vec<ToolDef>, Error> {
    let invalid = |reason: String| Error::InvalidPlugin {
        plugin: plugin.to_string(),
        reason,
    };
    if specs.len() > MAX_TOOLS {
        return Err(invalid(format!(
            "it declares {} tools; at most {MAX_TOOLS} are allowed",
            specs.len()
        )));
    }
    let mut tools: Vec<ToolDef> = Vec::with_capacity(specs.len());
    for spec in specs {
        if !policy::valid_name(&spec.name) {
            return Err(invalid(format!(
                "tool name `{}` is invalid: use 1-64 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter",
                spec.name.escape_debug()
            )));
        }
        if tools.iter().any(|t| t.name == spec.name) {
            return Err(invalid(format!("tool `{}` is declared twice", spec.name)));
        }
        if spec.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(invalid(format!(
                "tool `{}`: description is {} bytes; at most {MAX_DESCRIPTION_BYTES} are allowed",
                spec.name,
                spec.description.len()
            )));
        }
        let parse_schema = |text: &str, which: &str| -> Result<serde_json::Value, Error> {
            if text.len() > MAX_SCHEMA_BYTES {
                return Err(invalid(format!(
                    "tool `{}`: {which} is larger than {MAX_SCHEMA_BYTES} bytes",
                    spec.name
                )));
            }
            serde_json::from_str(text)
                .map_err(|e| invalid(format!("tool `{}`: {which} is not JSON: {e}", spec.name)))
        };
        let input_schema = parse_schema(&spec.input_schema, "input schema")?;
        let output_schema = spec
            .output_schema
            .as_deref()
            .map(|s| parse_schema(s, "output schema"))
            .transpose()?;
        let validator = InputSchema::compile(&input_schema)
            .map_err(|e| invalid(format!("tool `{}`: input schema: {e}", spec.name)))?;
        tools.push(ToolDef {
            name: spec.name,
            title: spec.title,
            description: spec.description,
            input_schema,
            output_schema,
            effect: match spec.effect {
                WitEffect::Read => Effect::Read,
                WitEffect::Write => Effect::Write,
                WitEffect::Destructive => Effect::Destructive,
            },
            validator: Arc::new(validator),
        });
    }
    Ok(tools)
}

#[cfg(test)]
mod tests {
    use super::sha256_hex;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
