//! `files`: read and list files in the directories the manifest grants.
//!
//! Build: `plugins/build.sh` (output in `plugins/dist/files.wasm`).
//! Grants: one or more directories, e.g. `dirs = [{ host = "docs", guest = "/docs" }]`.
//! Paths in arguments are guest paths, e.g. `/docs/readme.md`.

use portcullis_sdk::{Args, Effect, Plugin, Tool, ToolError, Value, json};
use serde::Deserialize;
use std::fs;
use std::io::{ErrorKind, Read};

/// Default and largest number of bytes `read_file` returns.
const DEFAULT_MAX_BYTES: u64 = 64 * 1024;
const MAX_BYTES_LIMIT: u64 = 1024 * 1024;
/// Default and largest number of entries `list_dir` returns.
const DEFAULT_MAX_ENTRIES: usize = 200;
const MAX_ENTRIES_LIMIT: usize = 5000;

struct Files;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadFile {
    path: String,
    #[serde(default)]
    offset: u64,
    max_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListDir {
    path: String,
    #[serde(default)]
    recursive: bool,
    max_entries: Option<usize>,
}

impl Plugin for Files {
    fn tools() -> Vec<Tool> {
        vec![
            Tool::new(
                "read_file",
                "Read a text file from a granted directory. Returns the text from `offset` \
                 (bytes, default 0), at most `max_bytes` (default 65536), and whether the \
                 file continues past what was returned.",
            )
            .title("Read file")
            .input_schema(json!({
                "type": "object",
                "properties": {
                    "path": { "type": "string", "description": "Path of the file, e.g. /docs/readme.md" },
                    "offset": { "type": "integer", "minimum": 0, "description": "Byte offset to start at" },
                    "max_bytes": { "type": "integer", "minimum": 1, "maximum": MAX_BYTES_LIMIT, "description": "Most bytes to return" }
                },
                "required": ["path"],
                "additionalProperties": false
            }))
            .effect(Effect::Read),
            Tool::new(
                "list_dir",
                "List a directory in a granted directory: name, kind (file, dir, symlink) and \
                 size of each entry, sorted by name. With `recursive`, walks subdirectories \
                 and returns paths relative to `path`.",
            )
            .title("List directory")
            .input_schema(json!({
                "type": "object",
                "properties": {
                    "path": { "type": "string", "description": "Directory to list, e.g. /docs" },
                    "recursive": { "type": "boolean", "description": "Walk subdirectories too" },
                    "max_entries": { "type": "integer", "minimum": 1, "maximum": MAX_ENTRIES_LIMIT, "description": "Most entries to return (default 200)" }
                },
                "required": ["path"],
                "additionalProperties": false
            }))
            .effect(Effect::Read),
        ]
    }

    fn call(tool: &str, args: Args<'_>) -> Result<Value, ToolError> {
        match tool {
            "read_file" => read_file(args.parse()?),
            "list_dir" => list_dir(args.parse()?),
            other => Err(ToolError::unknown_tool(other)),
        }
    }
}

fn io_error(path: &str, e: std::io::Error) -> ToolError {
    match e.kind() {
        ErrorKind::NotFound => ToolError::NotFound(format!("`{path}` does not exist")),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            ToolError::Denied(format!("`{path}`: permission denied by the host's grants"))
        }
        _ => ToolError::Internal(format!("`{path}`: {e}")),
    }
}

fn read_file(req: ReadFile) -> Result<Value, ToolError> {
    let max = req
        .max_bytes
        .unwrap_or(DEFAULT_MAX_BYTES)
        .min(MAX_BYTES_LIMIT);
    let mut file = fs::File::open(&req.path).map_err(|e| io_error(&req.path, e))?;
    let size = file.metadata().map_err(|e| io_error(&req.path, e))?.len();
    if req.offset > 0 {
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(req.offset))
            .map_err(|e| io_error(&req.path, e))?;
    }
    let mut buf = Vec::new();
    file.take(max)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(&req.path, e))?;
    let end = req.offset + buf.len() as u64;
    let text = match String::from_utf8(buf) {
        Ok(text) => text,
        // A range may cut a multi-byte character; keep the valid prefix only
        // when that is the sole problem.
        Err(e) if e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).map_err(|e| ToolError::Internal(e.to_string()))?
        }
        Err(_) => {
            return Err(ToolError::InvalidInput(format!(
                "`{}` is not a UTF-8 text file",
                req.path
            )));
        }
    };
    Ok(json!({
        "path": req.path,
        "size": size,
        "offset": req.offset,
        "text": text,
        "truncated": end < size,
    }))
}

fn list_dir(req: ListDir) -> Result<Value, ToolError> {
    let max = req
        .max_entries
        .unwrap_or(DEFAULT_MAX_ENTRIES)
        .min(MAX_ENTRIES_LIMIT);
    let mut entries = Vec::new();
    let mut truncated = false;
    // Breadth-first walk; `prefix` is the path relative to `req.path`.
    let mut pending = std::collections::VecDeque::from([(req.path.clone(), String::new())]);
    while let Some((dir, prefix)) = pending.pop_front() {
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| io_error(&dir, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| io_error(&dir, e))?;
        names.sort_by_key(|e| e.file_name());
        for entry in names {
            if entries.len() >= max {
                truncated = true;
                break;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let file_type = entry.file_type().map_err(|e| io_error(&rel, e))?;
            let kind = if file_type.is_dir() {
                "dir"
            } else if file_type.is_symlink() {
                "symlink"
            } else {
                "file"
            };
            let size = if file_type.is_file() {
                entry.metadata().map(|m| m.len()).unwrap_or(0)
            } else {
                0
            };
            if req.recursive && file_type.is_dir() {
                pending.push_back((format!("{dir}/{name}"), rel.clone()));
            }
            entries.push(json!({ "name": rel, "kind": kind, "size": size }));
        }
        if truncated {
            break;
        }
    }
    Ok(json!({ "path": req.path, "entries": entries, "truncated": truncated }))
}

portcullis_sdk::export_plugin!(Files);
