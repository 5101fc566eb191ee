//! What the host offers: each tool as a [`ToolDescriptor`], the plugin's
//! declaration plus the facts the host enforces (effect raised to the
//! grants, the grants themselves, the approval setting), and its neutral
//! JSON form. Model and MCP formats are made from it in `formats`.

use crate::plugin::LoadedPlugin;
use crate::policy::{ApprovalSetting, Effect, Grants};
use serde_json::{Value, json};

/// A tool as the host offers it: the plugin's declaration plus the facts
/// the host enforces.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolDescriptor {
    /// `plugin.tool`, the name to call it by.
    pub name: String,
    /// The plugin's name.
    pub plugin: String,
    /// The tool's name within the plugin.
    pub tool: String,
    /// The sha256 the plugin is pinned to.
    pub plugin_sha256: String,
    /// The sha256 of the plugin's whole tool list as declared (canonical
    /// JSON): compare it with the one you reviewed to catch a changed
    /// definition.
    pub tool_list_sha256: String,
    /// Short title, if declared (sanitised like the description).
    pub title: Option<String>,
    /// What the tool does: the plugin's text (untrusted), with control,
    /// ANSI and invisible formatting characters removed and cut to 2 KiB.
    pub description: String,
    /// JSON Schema of the arguments.
    pub input_schema: Value,
    /// JSON Schema of the output, if declared.
    pub output_schema: Option<Value>,
    /// The effect: the plugin's declaration, raised to what the grants allow
    /// (a read-write directory makes a tool at least `write`).
    pub effect: Effect,
    /// The grants in force.
    pub grants: Grants,
    /// When a call needs approval: the manifest's setting, or the floor of
    /// the effect (`destructive` and `write` always, `read` never).
    pub approval: ApprovalSetting,
}

impl ToolDescriptor {
    /// Tool `t` of `plugin` as offered, with its approval setting.
    pub(crate) fn new(
        plugin: &LoadedPlugin,
        t: usize,
        approval: &ApprovalSetting,
    ) -> ToolDescriptor {
        let def = &plugin.tools[t];
        let policy = &plugin.policy;
        ToolDescriptor {
            name: format!("{}.{}", policy.name, def.name),
            plugin: policy.name.clone(),
            tool: def.name.clone(),
            plugin_sha256: policy.sha256.clone(),
            tool_list_sha256: plugin.tool_list_sha256.clone(),
            title: def.title.clone(),
            description: def.description.clone(),
            input_schema: def.input_schema.clone(),
            output_schema: def.output_schema.clone(),
            effect: plugin.effect(t),
            grants: policy.grants(),
            approval: approval.clone(),
        }
    }
}

/// The host's own neutral descriptor as JSON: everything a runtime or a
/// person approving a call needs, including the grants in force.
pub fn descriptor_json(tool: &ToolDescriptor) -> Value {
    json!({
        "name": tool.name,
        "plugin": tool.plugin,
        "tool": tool.tool,
        "plugin_sha256": tool.plugin_sha256,
        "tool_list_sha256": tool.tool_list_sha256,
        "title": tool.title,
        "description": tool.description,
        "effect": tool.effect.as_str(),
        "approval": match &tool.approval {
            ApprovalSetting::Never => json!("never"),
            ApprovalSetting::Always => json!("always"),
            ApprovalSetting::Rules(rules) => json!({
                "rules": rules.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        },
        "input_schema": tool.input_schema,
        "output_schema": tool.output_schema,
        "grants": {
            "dirs": tool.grants.dirs.iter().map(|d| json!({
                "guest": d.guest,
                "host": d.host.display().to_string(),
                "mode": d.mode.as_str(),
            })).collect::<Vec<_>>(),
            "env": tool.grants.env,
            "secrets": tool.grants.secrets,
            "network": tool.grants.http,
        },
    })
}
