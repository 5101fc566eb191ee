//! `hostile`: a TEST-ONLY plugin whose tools attack the host. Never grant it
//! anything in a real manifest.
//!
//! Each tool is one attack: burn CPU, sleep forever inside a host call, grow
//! memory without bound, overflow the stack, flood output and stdio, and try
//! to escape its directory grants. The integration tests in `tests/` call
//! them and check that the host stops each one with a typed error, changes
//! nothing outside the grants, and serves the next call.

use portcullis_sdk::{Args, Plugin, Tool, ToolError, Value, json};
use serde::Deserialize;
use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

struct Hostile;

/// Counts calls within one instance: a fresh instance always answers 1.
static CALLS: AtomicU64 = AtomicU64::new(0);

#[derive(Deserialize)]
struct PathArg {
    path: String,
}

#[derive(Deserialize)]
struct TwoPaths {
    from: String,
    to: String,
}

#[derive(Deserialize)]
struct Size {
    bytes: usize,
}

const TOOLS: &[(&str, &str)] = &[
    ("spin", "loops forever"),
    ("sleep", "sleeps for an hour on a monotonic-clock pollable"),
    ("grow", "grows a Vec until memory runs out"),
    ("recurse", "recurses without end"),
    ("panic", "panics"),
    ("exit", "calls exit(3)"),
    ("big_output", "returns a string of `bytes` bytes"),
    (
        "flood_stdout",
        "writes `bytes` bytes to stdout, then returns",
    ),
    (
        "flood_stderr",
        "writes `bytes` bytes to stderr, then returns",
    ),
    ("echo", "returns the raw arguments it received"),
    ("counter", "returns how many calls this instance has served"),
    (
        "environment",
        "returns env vars, args, cwd and stdin contents",
    ),
    ("read", "reads the file at `path`"),
    ("write", "writes `data` to the file at `path`"),
    ("truncate", "truncates the file at `path` to zero bytes"),
    ("remove", "removes the file at `path`"),
    ("list", "lists the directory at `path`"),
    ("symlink", "creates a symlink at `to` pointing at `from`"),
    (
        "hard_link",
        "creates a hard link at `to` to the file `from`",
    ),
    ("rename", "renames `from` to `to`"),
    (
        "log_flood",
        "logs `bytes` messages through the host log interface",
    ),
];

impl Plugin for Hostile {
    fn tools() -> Vec<Tool> {
        TOOLS
            .iter()
            .map(|(name, description)| Tool::new(*name, *description))
            .collect()
    }

    fn call(tool: &str, args: Args<'_>) -> Result<Value, ToolError> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        match tool {
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(json!("woke up"))
            }
            "grow" => {
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                loop {
                    chunks.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "recurse" => Ok(json!(recurse(black_box(1)))),
            "panic" => panic!("the plugin panicked on purpose"),
            "exit" => std::process::exit(3),
            "big_output" => {
                let size: Size = args.parse()?;
                Ok(json!("x".repeat(size.bytes)))
            }
            "flood_stdout" | "flood_stderr" => {
                let size: Size = args.parse()?;
                let line = [b'A'; 1024];
                let mut left = size.bytes;
                while left > 0 {
                    let n = left.min(line.len());
                    let result = if tool == "flood_stdout" {
                        std::io::stdout().write_all(&line[..n])
                    } else {
                        std::io::stderr().write_all(&line[..n])
                    };
                    result.map_err(|e| ToolError::Internal(e.to_string()))?;
                    left -= n;
                }
                let flushed = if tool == "flood_stdout" {
                    std::io::stdout().flush()
                } else {
                    std::io::stderr().flush()
                };
                flushed.map_err(|e| ToolError::Internal(e.to_string()))?;
                Ok(json!("flooded"))
            }
            "echo" => Ok(Value::String(args.raw().to_string())),
            "counter" => Ok(json!(n)),
            "environment" => {
                let mut stdin = String::new();
                let stdin_result = std::io::stdin().read_to_string(&mut stdin);
                Ok(json!({
                    "env": std::env::vars().collect::<Vec<_>>(),
                    "args": std::env::args().collect::<Vec<_>>(),
                    "cwd": std::env::current_dir().ok().map(|p| p.display().to_string()),
                    "stdin": stdin,
                    "stdin_error": stdin_result.err().map(|e| e.to_string()),
                }))
            }
            "read" => {
                let p: PathArg = args.parse()?;
                std::fs::read_to_string(&p.path)
                    .map(Value::String)
                    .map_err(|e| fs_error(&p.path, e))
            }
            "write" => {
                #[derive(Deserialize)]
                struct WriteArgs {
                    path: String,
                    data: String,
                }
                let w: WriteArgs = args.parse()?;
                std::fs::write(&w.path, w.data)
                    .map(|()| json!("written"))
                    .map_err(|e| fs_error(&w.path, e))
            }
            "truncate" => {
                let p: PathArg = args.parse()?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&p.path)
                    .map(|_| json!("truncated"))
                    .map_err(|e| fs_error(&p.path, e))
            }
            "remove" => {
                let p: PathArg = args.parse()?;
                std::fs::remove_file(&p.path)
                    .map(|()| json!("removed"))
                    .map_err(|e| fs_error(&p.path, e))
            }
            "list" => {
                let p: PathArg = args.parse()?;
                let names: Result<Vec<String>, _> = std::fs::read_dir(&p.path)
                    .map_err(|e| fs_error(&p.path, e))?
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect();
                names.map(|n| json!(n)).map_err(|e| fs_error(&p.path, e))
            }
            "symlink" => {
                let p: TwoPaths = args.parse()?;
                symlink(&p.from, &p.to).map(|()| json!("linked"))
            }
            "hard_link" => {
                let p: TwoPaths = args.parse()?;
                std::fs::hard_link(&p.from, &p.to)
                    .map(|()| json!("linked"))
                    .map_err(|e| fs_error(&p.to, e))
            }
            "rename" => {
                let p: TwoPaths = args.parse()?;
                std::fs::rename(&p.from, &p.to)
                    .map(|()| json!("renamed"))
                    .map_err(|e| fs_error(&p.to, e))
            }
            "log_flood" => {
                let size: Size = args.parse()?;
                for i in 0..size.bytes {
                    portcullis_sdk::log::info(&format!("message {i}"));
                }
                Ok(json!("logged"))
            }
            other => Err(ToolError::unknown_tool(other)),
        }
    }
}

fn fs_error(path: &str, e: std::io::Error) -> ToolError {
    ToolError::Denied(format!("`{path}`: {e}"))
}

/// Recursion kept in WebAssembly locals, so it exhausts the engine's stack
/// rather than the guest's shadow stack in linear memory.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_mul(black_box(depth) | 1)
}

/// Creates a symlink at guest path `link` whose target is `target`, exactly
/// as given (std's wrapper is unstable on wasip2, so call WASI directly).
fn symlink(target: &str, link: &str) -> Result<(), ToolError> {
    for (dir, guest) in wasip2::filesystem::preopens::get_directories() {
        let prefix = guest.trim_end_matches('/');
        if let Some(rest) = link.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
            return dir
                .symlink_at(target, rest)
                .map_err(|e| ToolError::Denied(format!("`{link}`: {e:?}")));
        }
    }
    Err(ToolError::NotFound(format!(
        "`{link}` is under no preopened directory"
    )))
}

portcullis_sdk::export_plugin!(Hostile);
