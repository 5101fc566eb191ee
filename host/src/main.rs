//! The `portcullis` command: see `portcullis --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
