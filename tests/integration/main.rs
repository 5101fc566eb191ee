//! Integration tests: each security claim of the kernel, proved against the
//! real wasmtime and the real components built from `plugins/`, and the
//! example plugins' tools.
//!
//! Run `plugins/build.sh` first (the README's test command does).

mod allocations;
mod approvals;
mod arguments;
mod audit;
mod audit_trail;
mod cache;
mod deny_imports;
mod dirs;
mod disk;
mod egress;
mod egress_limits;
mod egress_secrets;
mod escapes;
mod fixtures;
mod grants;
mod imports;
mod isolation;
mod limits;
mod mcp;
mod mcp_approvals;
mod mcp_http;
mod mcp_inspector;
mod mcp_python;
mod output;
mod pinning;
mod plugin_fetch;
mod plugin_files;
mod plugin_issues;
mod plugin_json;
mod plugin_languages;
mod pooling;
mod secrets;
mod side_doors;
mod tls;
mod tool_pins;
mod wasi_http;
