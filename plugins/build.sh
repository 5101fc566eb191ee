#!/usr/bin/env bash
# Builds every plugin in this folder for wasm32-wasip2 and copies the
# components to plugins/dist/NAME.wasm.
#
# The build is reproducible: the toolchain is pinned (rust-toolchain.toml),
# dependencies are locked (--locked), and machine paths (the cargo home and
# this checkout) are remapped, so the same source gives the same bytes, and
# the same sha256 pins, on every machine.
#
# Usage: plugins/build.sh          (honours CARGO_HOME and CARGO_TARGET_DIR)
set -euo pipefail

plugins=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$plugins")
cd "$plugins"

if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        echo "installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)" >&2
        rustup target add wasm32-wasip2 >&2
    fi
fi

cargo_home=${CARGO_HOME:-$HOME/.cargo}
# Separated by 0x1f so that paths with spaces survive.
sep=$'\x1f'
export CARGO_ENCODED_RUSTFLAGS="--remap-path-prefix=${cargo_home}=/cargo${sep}--remap-path-prefix=${root}=/portcullis"

cargo build --release --locked --target wasm32-wasip2 "$@"

target_dir=${CARGO_TARGET_DIR:-$plugins/target}
mkdir -p dist
for crate in files hostile sockets; do
    src="$target_dir/wasm32-wasip2/release/$crate.wasm"
    # Copy then rename, so a reader never sees a half-written component.
    cp "$src" "dist/.$crate.wasm.tmp"
    mv "dist/.$crate.wasm.tmp" "dist/$crate.wasm"
    echo "built plugins/dist/$crate.wasm" >&2
done
