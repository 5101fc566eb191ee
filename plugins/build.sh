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
# A relative CARGO_TARGET_DIR means relative to where we were started.
if [[ -n "${CARGO_TARGET_DIR:-}" && "${CARGO_TARGET_DIR}" != /* ]]; then
    export CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"
fi
cd "$root"

if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        echo "installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)" >&2
        rustup target add wasm32-wasip2 >&2
    fi
fi

cargo_home=${CARGO_HOME:-$HOME/.cargo}
target_dir=${CARGO_TARGET_DIR:-$root/target}
# Separated by 0x1f so that paths with spaces survive. The last matching
# prefix wins, so the target dir (build-script output) goes last: it may lie
# inside the checkout.
sep=$'\x1f'
export CARGO_ENCODED_RUSTFLAGS="--remap-path-prefix=${cargo_home}=/cargo${sep}--remap-path-prefix=${root}=/portcullis${sep}--remap-path-prefix=${target_dir}=/target"

cargo build --profile plugin --locked --target wasm32-wasip2 -p files -p json -p refunds -p fetch -p hostile -p sockets -p egress -p issues -p wasihttp "$@"

dist="$plugins/dist"
mkdir -p "$dist"
for crate in files json refunds fetch issues hostile sockets egress wasihttp; do
    src="$target_dir/wasm32-wasip2/plugin/$crate.wasm"
    # Copy then rename, so a reader never sees a half-written component.
    cp "$src" "$dist/.$crate.wasm.tmp"
    mv "$dist/.$crate.wasm.tmp" "$dist/$crate.wasm"
    echo "built plugins/dist/$crate.wasm" >&2
done
