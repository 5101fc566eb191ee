//! The `portcullis` command: see `portcullis --help`.

mod cli;
// The library's file helpers (`pin` writes manifests atomically with them).
#[allow(
    dead_code,
    reason = "the command uses only part of the library's helpers"
)]
#[path = "util.rs"]
mod util;

fn main() -> std::process::ExitCode {
    cli::main()
}
