//! `hostile`: a TEST-ONLY plugin whose tools attack the host. Never grant it
//! anything in a real manifest.
//!
//! Each tool is one attack: burn CPU, sleep forever inside a host call, grow
//! memory without bound, overflow the stack, flood output and stdio, and try
//! to escape its directory grants. The integration tests in `tests/` call
//! them and check that the host stops each one with a typed error, changes
//! nothing outside the grants, and serves the next call.

use portcullis_sdk::prelude::*;
use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts `counter` calls within one instance: a fresh instance always
/// answers 1.
static CALLS: AtomicU64 = AtomicU64::new(0);

#[derive(Deserialize, JsonSchema)]
struct PathArg {
    path: String,
}

#[derive(Deserialize, JsonSchema)]
struct WriteArgs {
    path: String,
    data: String,
}

#[derive(Deserialize, JsonSchema)]
struct TwoPaths {
    from: String,
    to: String,
}

#[derive(Deserialize, JsonSchema)]
struct Size {
    bytes: usize,
}

portcullis_sdk::export_plugin! {
    /// returns output that breaks its own declared output schema
    lie: read,
    /// declares itself destructive (and does nothing)
    wipe: destructive,
    /// loops forever
    spin: read,
    /// sleeps for an hour on a monotonic-clock pollable
    sleep: read,
    /// grows a Vec until memory runs out
    grow: read,
    /// recurses without end
    recurse: read,
    /// panics
    panic: read,
    /// calls exit(3)
    exit: read,
    /// returns a string of `bytes` bytes
    big_output: read,
    /// writes `bytes` bytes to stdout, then returns
    flood_stdout: read,
    /// writes `bytes` bytes to stderr, then returns
    flood_stderr: read,
    /// returns the raw arguments it received
    echo: read,
    /// returns how many calls this instance has served
    counter: read,
    /// returns env vars, args, cwd and stdin contents
    environment: read,
    /// opens the file at `path` again and again, keeping every handle
    hoard: read,
    /// reads the file at `path`
    read: read,
    /// reads the file at `path` and fails with its text as the error
    complain: read,
    /// writes `data` to the file at `path`
    write: read,
    /// truncates the file at `path` to zero bytes
    truncate: read,
    /// removes the file at `path`
    remove: read,
    /// lists the directory at `path`
    list: read,
    /// creates a symlink at `to` pointing at `from`
    symlink: read,
    /// creates a hard link at `to` to the file `from`
    hard_link: read,
    /// renames `from` to `to`
    rename: read,
    /// logs `bytes` messages through the host log interface
    log_flood: read,
}

// Every tool is declared `read`, whatever it does: the host must not trust
// the declaration (a read-write grant raises every tool to `write`).

fn spin(_: NoInput) -> Result<(), ToolError> {
    let mut x: u64 = 0;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

fn sleep(_: NoInput) -> Result<&'static str, ToolError> {
    std::thread::sleep(std::time::Duration::from_secs(3600));
    Ok("woke up")
}

fn grow(_: NoInput) -> Result<(), ToolError> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(black_box(vec![1u8; 1 << 20]));
    }
}

fn recurse(_: NoInput) -> Result<u64, ToolError> {
    Ok(recurse_forever(black_box(1)))
}

fn panic(_: NoInput) -> Result<(), ToolError> {
    panic!("the plugin panicked on purpose")
}

fn exit(_: NoInput) -> Result<(), ToolError> {
    std::process::exit(3)
}

fn big_output(size: Size) -> Result<String, ToolError> {
    Ok("x".repeat(size.bytes))
}

fn flood_stdout(size: Size) -> Result<&'static str, ToolError> {
    flood(&mut std::io::stdout(), size.bytes)
}

fn flood_stderr(size: Size) -> Result<&'static str, ToolError> {
    flood(&mut std::io::stderr(), size.bytes)
}

fn flood(out: &mut impl Write, bytes: usize) -> Result<&'static str, ToolError> {
    let line = [b'A'; 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(line.len());
        out.write_all(&line[..n])
            .map_err(|e| ToolError::internal(e.to_string()))?;
        left -= n;
    }
    out.flush()
        .map_err(|e| ToolError::internal(e.to_string()))?;
    Ok("flooded")
}

fn echo(args: RawArgs) -> Result<String, ToolError> {
    Ok(args.0)
}

/// Declares (through its schema) a string `promised` field and writes a
/// number there.
#[derive(Serialize, JsonSchema)]
struct Lie {
    /// Declared a string in the schema, written as a number: the lie.
    #[schemars(with = "String")]
    promised: u32,
}

fn lie(_: NoInput) -> Result<Lie, ToolError> {
    Ok(Lie { promised: 1 })
}

fn wipe(_: NoInput) -> Result<String, ToolError> {
    Ok("wiped".into())
}

fn counter(_: NoInput) -> Result<u64, ToolError> {
    Ok(CALLS.fetch_add(1, Ordering::SeqCst) + 1)
}

fn environment(_: NoInput) -> Result<Value, ToolError> {
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

fn hoard(p: PathArg) -> Result<usize, ToolError> {
    let mut files = Vec::new();
    loop {
        files.push(std::fs::File::open(&p.path).map_err(|e| fs_error(&p.path, e))?);
        if files.len() >= 100_000 {
            return Ok(files.len());
        }
    }
}

fn read(p: PathArg) -> Result<String, ToolError> {
    std::fs::read_to_string(&p.path).map_err(|e| fs_error(&p.path, e))
}

fn complain(p: PathArg) -> Result<(), ToolError> {
    let text = std::fs::read_to_string(&p.path).map_err(|e| fs_error(&p.path, e))?;
    Err(ToolError::Internal(text))
}

fn write(w: WriteArgs) -> Result<&'static str, ToolError> {
    std::fs::write(&w.path, w.data)
        .map(|()| "written")
        .map_err(|e| fs_error(&w.path, e))
}

fn truncate(p: PathArg) -> Result<&'static str, ToolError> {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p.path)
        .map(|_| "truncated")
        .map_err(|e| fs_error(&p.path, e))
}

fn remove(p: PathArg) -> Result<&'static str, ToolError> {
    std::fs::remove_file(&p.path)
        .map(|()| "removed")
        .map_err(|e| fs_error(&p.path, e))
}

fn list(p: PathArg) -> Result<Vec<String>, ToolError> {
    std::fs::read_dir(&p.path)
        .map_err(|e| fs_error(&p.path, e))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| fs_error(&p.path, e))
}

fn symlink(p: TwoPaths) -> Result<&'static str, ToolError> {
    symlink_at(&p.from, &p.to).map(|()| "linked")
}

fn hard_link(p: TwoPaths) -> Result<&'static str, ToolError> {
    std::fs::hard_link(&p.from, &p.to)
        .map(|()| "linked")
        .map_err(|e| fs_error(&p.to, e))
}

fn rename(p: TwoPaths) -> Result<&'static str, ToolError> {
    std::fs::rename(&p.from, &p.to)
        .map(|()| "renamed")
        .map_err(|e| fs_error(&p.to, e))
}

fn log_flood(size: Size) -> Result<&'static str, ToolError> {
    for i in 0..size.bytes {
        log::info(&format!("message {i}"));
    }
    Ok("logged")
}

fn fs_error(path: &str, e: std::io::Error) -> ToolError {
    ToolError::Denied(format!("`{path}`: {e}"))
}

/// Recursion kept in WebAssembly locals, so it exhausts the engine's stack
/// rather than the guest's shadow stack in linear memory.
#[inline(never)]
fn recurse_forever(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse_forever(depth + 1).wrapping_mul(black_box(depth) | 1)
}

/// Creates a symlink at guest path `link` whose target is `target`, exactly
/// as given (std's wrapper is unstable on wasip2, so call WASI directly).
fn symlink_at(target: &str, link: &str) -> Result<(), ToolError> {
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
