//! Integration tests: each security claim of the kernel, proved against the
//! real wasmtime and the real components built from `plugins/`.
//!
//! Run `plugins/build.sh` first (the README's test command does).

mod approvals;
mod arguments;
mod audit;
mod escapes;
mod imports;
mod isolation;
mod limits;
mod output;
mod pinning;
