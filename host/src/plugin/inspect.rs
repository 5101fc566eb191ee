//! Reading a component without a manifest or pin: what it imports,
//! exports and declares, for tool authors (`portcullis inspect`).

use super::check_tools;
use crate::error::Error;
use crate::hash::sha256_hex;
use crate::policy::{self, Effect, PluginPolicy};
use crate::sandbox::Sandbox;

/// What a component declares, read without a manifest: see [`inspect`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Inspection {
    /// sha256 of the file, as a manifest pins it.
    pub sha256: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// Every import, and whether the host would grant it.
    pub imports: Vec<(String, ImportStatus)>,
    /// Every export.
    pub exports: Vec<String>,
    /// The tool list, or why the host would refuse the plugin.
    pub tools: Result<Vec<InspectedTool>, String>,
    /// sha256 of the canonical tool list, when it could be read.
    pub tool_list_sha256: Option<String>,
    /// The tool list as declared (what `tool_list_sha256` hashes), for
    /// `portcullis pin`'s diff.
    pub tool_list: Option<serde_json::Value>,
}

/// Whether the host links an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportStatus {
    /// Linked for every plugin.
    Granted,
    /// Linked only for a plugin with `http` entries (`portcullis:tool/http`,
    /// `wasi:http`).
    NeedsHttpGrant,
    /// Never linked: a component importing it is refused.
    Refused,
    /// Refused unless the plugin's manifest entry opts in with
    /// `deny_imports`, which links a deny-everything implementation (every
    /// operation returns the interface's access-denied error).
    DenyIfOptedIn,
}

/// One tool as a component declares it (texts sanitised).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InspectedTool {
    /// The tool's name within its plugin.
    pub name: String,
    /// Short title, if declared.
    pub title: Option<String>,
    /// What the tool does (the plugin's words).
    pub description: String,
    /// JSON Schema of the arguments.
    pub input_schema: serde_json::Value,
    /// JSON Schema of the output, if declared.
    pub output_schema: Option<serde_json::Value>,
    /// The declared effect.
    pub effect: Effect,
}

/// Reads a component without a manifest or pin and reports what it
/// imports, exports and declares. The tool list comes from running
/// `list-tools` in the sandbox with no grants and the default limits.
///
/// # Errors
///
/// [`Error::PluginRead`] and [`Error::InvalidComponent`]; problems with the
/// tool list are reported in [`Inspection::tools`].
pub async fn inspect(path: impl AsRef<std::path::Path>) -> Result<Inspection, Error> {
    let path = path.as_ref();
    let name = "inspected".to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::PluginRead {
        plugin: name.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    let sandbox = Sandbox::new().map_err(Error::Internal)?;
    let component = sandbox
        .compile(&bytes)
        .map_err(|reason| Error::InvalidComponent {
            plugin: name.clone(),
            path: path.to_path_buf(),
            reason,
        })?;
    let sha256 = sha256_hex(&bytes);
    let imports: Vec<(String, ImportStatus)> = sandbox
        .imports(&component, true, &[])
        .into_iter()
        .map(|(name, linked)| {
            let interface = name.split_once('@').map_or(name.as_str(), |(i, _)| i);
            let status = match (linked, crate::sandbox::needs_http_grant(&name)) {
                (false, _) if crate::sandbox::deny_expand(interface).is_some() => {
                    ImportStatus::DenyIfOptedIn
                }
                (false, _) => ImportStatus::Refused,
                (true, true) => ImportStatus::NeedsHttpGrant,
                (true, false) => ImportStatus::Granted,
            };
            (name, status)
        })
        .collect();
    let exports = sandbox.exports(&component);
    // The tool list is read as a plugin with HTTP grants would run.
    let forbidden: Vec<&str> = imports
        .iter()
        .filter(|(_, status)| *status == ImportStatus::Refused)
        .map(|(n, _)| n.as_str())
        .collect();
    let mut tool_list = None;
    let tools = if forbidden.is_empty() {
        let policy = PluginPolicy {
            name: name.clone(),
            source: path.to_path_buf(),
            sha256: sha256.clone(),
            tools_sha256: None,
            pinned_tools: None,
            dirs: Vec::new(),
            env: Vec::new(),
            http: Vec::new(),
            limits: policy::Limits::default(),
            approvals: Default::default(),
            secrets: Vec::new(),
            // As a plugin that opted in would run.
            deny_imports: vec!["wasi:sockets/*".into()],
        };
        match sandbox.prepare(&component, crate::sandbox::OpenDirs::default()) {
            Err(reason) => Err(format!("not a portcullis plugin: {reason}")),
            Ok(pre) => sandbox.list_tools(&pre, &policy).await.and_then(|specs| {
                tool_list = Some(super::tool_pin::tool_list(&specs));
                check_tools(&name, specs)
                    .map(|defs| {
                        defs.into_iter()
                            .map(|d| InspectedTool {
                                name: d.name,
                                title: d.title,
                                description: d.description,
                                input_schema: d.input_schema,
                                output_schema: d.output_schema,
                                effect: d.effect,
                            })
                            .collect()
                    })
                    .map_err(|e| e.to_string())
            }),
        }
    } else {
        Err(format!(
            "the host would refuse it: it imports {}",
            forbidden.join(", ")
        ))
    };
    Ok(Inspection {
        sha256,
        size: bytes.len() as u64,
        imports,
        exports,
        tools,
        tool_list_sha256: tool_list.as_ref().map(super::tool_pin::tool_list_sha256),
        tool_list,
    })
}
