//! `files`: read, list, search, inspect and write files in the directories
//! the manifest grants.
//!
//! Build: `plugins/build.sh` (output in `plugins/dist/files.wasm`).
//! Grants: one or more directories, e.g. `dirs = [{ host = "docs", guest = "/docs" }]`;
//! `write_file` needs `mode = "read-write"`. Paths in arguments are guest
//! paths, e.g. `/docs/readme.md`. See README.md beside this file.

use portcullis_sdk::prelude::*;
use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Seek, SeekFrom, Write};

/// Default and largest number of bytes `read_file` returns.
const DEFAULT_MAX_BYTES: u64 = 64 * 1024;
const MAX_BYTES_LIMIT: u64 = 1024 * 1024;
/// Default and largest number of entries `list_dir` returns.
const DEFAULT_MAX_ENTRIES: usize = 200;
const MAX_ENTRIES_LIMIT: usize = 5000;
/// `search` defaults and limits.
const DEFAULT_MAX_MATCHES: usize = 100;
const MAX_MATCHES_LIMIT: usize = 1000;
const MAX_CONTEXT_LINES: usize = 10;
const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024;
const MAX_FILE_SIZE_LIMIT: u64 = 16 * 1024 * 1024;
const MAX_FILES_SEARCHED: usize = 10_000;
/// Longest line `search` returns; longer lines are cut (on a character
/// boundary).
const MAX_LINE_CHARS: usize = 500;
/// Largest file `write_file` writes.
const MAX_WRITE_BYTES: usize = 4 * 1024 * 1024;

portcullis_sdk::export_plugin! {
    /// Read a text file from a granted directory. By default returns the
    /// text from byte `offset` (default 0), at most `max_bytes` (default
    /// 65536). With `start_line` and/or `end_line` (1-based, inclusive)
    /// returns those lines instead. Says whether the file continues past
    /// what was returned.
    #[title = "Read file"]
    read_file: read,
    /// List a directory in a granted directory: name, kind (file, dir,
    /// symlink) and size of each entry, sorted by name. With `recursive`,
    /// walks subdirectories (down to `max_depth`) and returns paths relative
    /// to `path`. Stops after `max_entries` entries.
    #[title = "List directory"]
    list_dir: read,
    /// Search text files under a path (a file or a directory, walked
    /// recursively) for a plain string, or a regular expression with
    /// `regex: true` (Rust regex syntax, linear-time). Returns matching
    /// lines with their line numbers and optional context lines. Skips files
    /// larger than `max_file_size` and files that are not UTF-8 text.
    #[title = "Search files"]
    search: read,
    /// Write a text file in a granted directory: replace it (default),
    /// append to it, or create it only if it does not exist yet. Needs a
    /// read-write grant.
    #[title = "Write file"]
    write_file: write,
    /// Information about a path in a granted directory: kind (file, dir,
    /// symlink), size in bytes, and last modification time.
    #[title = "File information"]
    stat: read,
}

/// An I/O error as the tool's error, naming the path.
fn io_error(path: &str, e: std::io::Error) -> ToolError {
    match e.kind() {
        ErrorKind::NotFound => ToolError::not_found(format!("`{path}` does not exist")),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            ToolError::denied(format!("`{path}`: permission denied by the host's grants"))
        }
        ErrorKind::IsADirectory => ToolError::invalid_input(format!("`{path}` is a directory")),
        ErrorKind::NotADirectory => {
            ToolError::invalid_input(format!("`{path}` is not a directory"))
        }
        _ => ToolError::internal(format!("`{path}`: {e}")),
    }
}

// ---------------------------------------------------------------- read_file

/// Which part of a file to read: bytes by default, or lines.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadFile {
    /// Path of the file, e.g. `/docs/readme.md`.
    path: String,
    /// Byte offset to start at (default 0). Not with line ranges.
    offset: Option<u64>,
    /// Most bytes of text to return (default 65536, at most 1048576).
    #[schemars(range(min = 1, max = 1_048_576))]
    max_bytes: Option<u64>,
    /// First line to return, 1-based (default 1).
    #[schemars(range(min = 1))]
    start_line: Option<u64>,
    /// Last line to return, 1-based and inclusive (default: to the end or
    /// `max_bytes`).
    #[schemars(range(min = 1))]
    end_line: Option<u64>,
}

/// Part of a text file.
#[derive(Serialize, JsonSchema)]
struct FileText {
    /// The file's path.
    path: String,
    /// The file's size in bytes.
    size: u64,
    /// Byte offset of the returned text (byte reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    /// First line returned (line reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    start_line: Option<u64>,
    /// Last line returned (line reads only; absent when no line was).
    #[serde(skip_serializing_if = "Option::is_none")]
    end_line: Option<u64>,
    /// The text.
    text: String,
    /// Whether the file continues past the returned text (or the requested
    /// lines were cut at `max_bytes`).
    truncated: bool,
}

fn read_file(req: ReadFile) -> Result<FileText, ToolError> {
    let max = req
        .max_bytes
        .unwrap_or(DEFAULT_MAX_BYTES)
        .min(MAX_BYTES_LIMIT);
    let lines = req.start_line.is_some() || req.end_line.is_some();
    if lines && req.offset.is_some() {
        return Err(ToolError::invalid_input(
            "use either `offset` (bytes) or `start_line`/`end_line` (lines), not both",
        ));
    }
    let mut file = fs::File::open(&req.path).map_err(|e| io_error(&req.path, e))?;
    let meta = file.metadata().map_err(|e| io_error(&req.path, e))?;
    if meta.is_dir() {
        return Err(ToolError::invalid_input(format!(
            "`{}` is a directory: use `list_dir`",
            req.path
        )));
    }
    let size = meta.len();
    if lines {
        return read_lines(req, file, size, max);
    }
    let offset = req.offset.unwrap_or(0);
    if offset > 0 {
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(&req.path, e))?;
    }
    let mut buf = Vec::new();
    file.take(max)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(&req.path, e))?;
    let end = offset + buf.len() as u64;
    let text = utf8_prefix(buf).ok_or_else(|| not_text(&req.path))?;
    Ok(FileText {
        path: req.path,
        size,
        offset: Some(offset),
        start_line: None,
        end_line: None,
        text,
        truncated: end < size,
    })
}

fn read_lines(req: ReadFile, file: fs::File, size: u64, max: u64) -> Result<FileText, ToolError> {
    let start = req.start_line.unwrap_or(1);
    let end = req.end_line.unwrap_or(u64::MAX);
    if end < start {
        return Err(ToolError::invalid_input(format!(
            "`end_line` ({end}) is before `start_line` ({start})"
        )));
    }
    let mut reader = BufReader::new(file);
    let mut text = String::new();
    let mut line = Vec::new();
    let mut number = 0;
    let mut last = None;
    let mut truncated = false;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| io_error(&req.path, e))?;
        if n == 0 {
            break;
        }
        number += 1;
        if number < start {
            continue;
        }
        if number > end {
            truncated = true;
            break;
        }
        let piece = std::str::from_utf8(&line).map_err(|_| not_text(&req.path))?;
        if (text.len() + piece.len()) as u64 > max {
            truncated = true;
            break;
        }
        text.push_str(piece);
        last = Some(number);
    }
    Ok(FileText {
        path: req.path,
        size,
        offset: None,
        start_line: Some(start),
        end_line: last,
        text,
        truncated,
    })
}

fn not_text(path: &str) -> ToolError {
    ToolError::invalid_input(format!("`{path}` is not a UTF-8 text file"))
}

/// The bytes as text, dropping a multi-byte character cut at the end (a
/// byte range may cut one). `None` if the bytes are not UTF-8 otherwise.
fn utf8_prefix(bytes: Vec<u8>) -> Option<String> {
    match String::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(e) if e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).ok()
        }
        Err(_) => None,
    }
}

// ----------------------------------------------------------------- list_dir

/// The directory to list.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListDir {
    /// Directory to list, e.g. `/docs`.
    path: String,
    /// Walk subdirectories too (default false).
    #[serde(default)]
    recursive: bool,
    /// With `recursive`, how many levels below `path` to enter (default:
    /// no limit).
    #[schemars(range(min = 1))]
    max_depth: Option<usize>,
    /// Most entries to return (default 200, at most 5000).
    #[schemars(range(min = 1, max = 5000))]
    max_entries: Option<usize>,
}

/// One directory entry.
#[derive(Serialize, JsonSchema)]
struct Entry {
    /// Path relative to the listed directory.
    name: String,
    /// `file`, `dir` or `symlink`.
    kind: &'static str,
    /// Size in bytes (files only; 0 otherwise).
    size: u64,
}

/// A directory listing.
#[derive(Serialize, JsonSchema)]
struct Listing {
    /// The listed directory.
    path: String,
    /// The entries, breadth-first, sorted by name within each directory.
    entries: Vec<Entry>,
    /// Whether entries were left out because of `max_entries`.
    truncated: bool,
}

fn kind_of(file_type: fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "dir"
    } else if file_type.is_symlink() {
        "symlink"
    } else {
        "file"
    }
}

fn list_dir(req: ListDir) -> Result<Listing, ToolError> {
    let max = req
        .max_entries
        .unwrap_or(DEFAULT_MAX_ENTRIES)
        .min(MAX_ENTRIES_LIMIT);
    let max_depth = if req.recursive {
        req.max_depth.unwrap_or(usize::MAX)
    } else {
        1
    };
    let mut entries = Vec::new();
    let mut truncated = false;
    // Breadth-first walk; `prefix` is the path relative to `req.path`.
    let mut pending = VecDeque::from([(req.path.clone(), String::new(), 1)]);
    'walk: while let Some((dir, prefix, depth)) = pending.pop_front() {
        for entry in sorted_entries(&dir)? {
            if entries.len() >= max {
                truncated = true;
                break 'walk;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let file_type = entry.file_type().map_err(|e| io_error(&rel, e))?;
            let size = if file_type.is_file() {
                entry.metadata().map(|m| m.len()).unwrap_or(0)
            } else {
                0
            };
            if file_type.is_dir() && depth < max_depth {
                pending.push_back((format!("{dir}/{name}"), rel.clone(), depth + 1));
            }
            entries.push(Entry {
                name: rel,
                kind: kind_of(file_type),
                size,
            });
        }
    }
    Ok(Listing {
        path: req.path,
        entries,
        truncated,
    })
}

fn sorted_entries(dir: &str) -> Result<Vec<fs::DirEntry>, ToolError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| io_error(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io_error(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

// ------------------------------------------------------------------- search

/// What to search for, and where.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Search {
    /// A file, or a directory searched recursively, e.g. `/docs`.
    path: String,
    /// The text to find (or a regular expression with `regex: true`).
    #[schemars(length(min = 1, max = 1000))]
    pattern: String,
    /// Treat `pattern` as a regular expression (default false: plain text).
    #[serde(default)]
    regex: bool,
    /// Ignore case (default false).
    #[serde(default)]
    case_insensitive: bool,
    /// Most matching lines to return (default 100, at most 1000).
    #[schemars(range(min = 1, max = 1000))]
    max_matches: Option<usize>,
    /// Lines of context before and after each match (default 0, at most 10).
    #[schemars(range(max = 10))]
    context_lines: Option<usize>,
    /// Skip files larger than this many bytes (default 1048576, at most
    /// 16777216).
    #[schemars(range(min = 1, max = 16_777_216))]
    max_file_size: Option<u64>,
}

/// One matching line.
#[derive(Serialize, JsonSchema)]
struct Match {
    /// The file.
    path: String,
    /// Line number, 1-based.
    line: usize,
    /// The line (cut at 500 characters).
    text: String,
    /// Up to `context_lines` lines before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    before: Vec<String>,
    /// Up to `context_lines` lines after it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    after: Vec<String>,
}

/// Search results.
#[derive(Serialize, JsonSchema)]
struct SearchResults {
    /// Matching lines, by file path then line number.
    matches: Vec<Match>,
    /// Files searched.
    files_searched: usize,
    /// Files skipped: too large, or not UTF-8 text.
    files_skipped: usize,
    /// Whether the search stopped early (`max_matches`, or too many files).
    truncated: bool,
}

fn search(req: Search) -> Result<SearchResults, ToolError> {
    let source = if req.regex {
        req.pattern.clone()
    } else {
        regex::escape(&req.pattern)
    };
    let matcher = regex::RegexBuilder::new(&source)
        .case_insensitive(req.case_insensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ToolError::invalid_input(format!("invalid regular expression: {e}")))?;
    let max_matches = req
        .max_matches
        .unwrap_or(DEFAULT_MAX_MATCHES)
        .min(MAX_MATCHES_LIMIT);
    let context = req.context_lines.unwrap_or(0).min(MAX_CONTEXT_LINES);
    let max_size = req
        .max_file_size
        .unwrap_or(DEFAULT_MAX_FILE_SIZE)
        .min(MAX_FILE_SIZE_LIMIT);

    let mut results = SearchResults {
        matches: Vec::new(),
        files_searched: 0,
        files_skipped: 0,
        truncated: false,
    };
    let meta = fs::metadata(&req.path).map_err(|e| io_error(&req.path, e))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        collect_files(&req.path, &mut files, &mut results.truncated)?;
    } else {
        files.push((req.path.clone(), meta.len()));
    }
    for (path, size) in files {
        if size > max_size {
            results.files_skipped += 1;
            continue;
        }
        let Ok(bytes) = fs::read(&path) else {
            results.files_skipped += 1;
            continue;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            results.files_skipped += 1;
            continue;
        };
        results.files_searched += 1;
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !matcher.is_match(line) {
                continue;
            }
            if results.matches.len() >= max_matches {
                results.truncated = true;
                return Ok(results);
            }
            let cut = |l: &&str| clip(l);
            results.matches.push(Match {
                path: path.clone(),
                line: i + 1,
                text: clip(line),
                before: lines[i.saturating_sub(context)..i]
                    .iter()
                    .map(cut)
                    .collect(),
                after: lines[i + 1..(i + 1 + context).min(lines.len())]
                    .iter()
                    .map(cut)
                    .collect(),
            });
        }
    }
    Ok(results)
}

/// Every regular file under `dir` with its size, sorted by path; stops
/// (setting `truncated`) after `MAX_FILES_SEARCHED`. Symlinks are not
/// followed.
fn collect_files(
    dir: &str,
    files: &mut Vec<(String, u64)>,
    truncated: &mut bool,
) -> Result<(), ToolError> {
    let mut pending = vec![dir.trim_end_matches('/').to_owned()];
    while let Some(dir) = pending.pop() {
        let mut subdirs = Vec::new();
        for entry in sorted_entries(&dir)? {
            let path = format!("{dir}/{}", entry.file_name().to_string_lossy());
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                subdirs.push(path);
            } else if file_type.is_file() {
                if files.len() >= MAX_FILES_SEARCHED {
                    *truncated = true;
                    return Ok(());
                }
                let size = entry.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
                files.push((path, size));
            }
        }
        // Depth-first, in name order.
        pending.extend(subdirs.into_iter().rev());
    }
    files.sort();
    Ok(())
}

fn clip(line: &str) -> String {
    match line.char_indices().nth(MAX_LINE_CHARS) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    }
}

// --------------------------------------------------------------- write_file

/// How `write_file` treats an existing file.
#[derive(Deserialize, JsonSchema, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum WriteMode {
    /// Replace the file's contents, creating it if needed.
    #[default]
    Overwrite,
    /// Add to the end of the file, creating it if needed.
    Append,
    /// Create the file; fail if it already exists.
    Create,
}

/// The file to write.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WriteFile {
    /// Path of the file, e.g. `/out/notes.md`. Its directory must exist.
    path: String,
    /// The text to write (at most 4 MiB).
    content: String,
    /// `overwrite` (default), `append`, or `create` (only if it does not
    /// exist yet).
    #[serde(default)]
    mode: WriteMode,
}

/// What was written.
#[derive(Serialize, JsonSchema)]
struct Written {
    /// The file's path.
    path: String,
    /// Bytes written.
    bytes_written: usize,
    /// The file's size afterwards.
    size: u64,
}

fn write_file(req: WriteFile) -> Result<Written, ToolError> {
    if req.content.len() > MAX_WRITE_BYTES {
        return Err(ToolError::invalid_input(format!(
            "`content` is {} bytes; at most {MAX_WRITE_BYTES} can be written at once",
            req.content.len()
        )));
    }
    let mut options = fs::OpenOptions::new();
    match req.mode {
        WriteMode::Overwrite => options.write(true).create(true).truncate(true),
        WriteMode::Append => options.append(true).create(true),
        WriteMode::Create => options.write(true).create_new(true),
    };
    let write_error = |e: std::io::Error| match e.kind() {
        // The sandbox reports a write under a read-only grant as WASI
        // `not-permitted` (EPERM) or `read-only` (EROFS).
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => ToolError::denied(format!(
            "cannot write `{}`: the directory is granted read-only (writing needs a `read-write` grant in the manifest)",
            req.path
        )),
        ErrorKind::AlreadyExists => ToolError::invalid_input(format!(
            "`{}` already exists (mode `create`); use mode `overwrite` or `append`",
            req.path
        )),
        ErrorKind::NotFound => ToolError::not_found(format!(
            "cannot write `{}`: its directory does not exist",
            req.path
        )),
        _ => io_error(&req.path, e),
    };
    let mut file = options.open(&req.path).map_err(write_error)?;
    file.write_all(req.content.as_bytes())
        .and_then(|()| file.flush())
        .map_err(write_error)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Written {
        path: req.path,
        bytes_written: req.content.len(),
        size,
    })
}

// --------------------------------------------------------------------- stat

/// The path to inspect.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Stat {
    /// Any path in a granted directory, e.g. `/docs/readme.md`.
    path: String,
}

/// Information about a path.
#[derive(Serialize, JsonSchema)]
struct FileInfo {
    /// The path.
    path: String,
    /// `file`, `dir` or `symlink` (symlinks are not followed).
    kind: &'static str,
    /// Size in bytes.
    size: u64,
    /// Last modification, in seconds since the Unix epoch, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    modified: Option<u64>,
}

fn stat(req: Stat) -> Result<FileInfo, ToolError> {
    let meta = fs::symlink_metadata(&req.path).map_err(|e| io_error(&req.path, e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    Ok(FileInfo {
        kind: kind_of(meta.file_type()),
        size: meta.len(),
        modified,
        path: req.path,
    })
}
