#!/usr/bin/env bash
# Builds {{name}}.wasm (a wasm32-wasip2 component) next to this script.
# Machine paths are remapped, so the same sources and Cargo.lock give the
# same bytes, and the same pin, on any machine with the same toolchain.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2 >&2
fi
target=${CARGO_TARGET_DIR:-$here/target}
sep=$'\x1f'
export CARGO_ENCODED_RUSTFLAGS="--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo${sep}--remap-path-prefix=$here=/plugin${sep}--remap-path-prefix=$target=/target"
cargo build --release --target wasm32-wasip2 >&2
cp "$target/wasm32-wasip2/release/{{crate}}.wasm" "$here/.{{name}}.wasm.tmp"
mv "$here/.{{name}}.wasm.tmp" "$here/{{name}}.wasm"
echo "built {{name}}.wasm; now: portcullis pin $here/portcullis.toml" >&2
