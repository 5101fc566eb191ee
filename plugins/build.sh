#!/usr/bin/env bash
# Builds every plugin in this folder and copies the components to
# plugins/dist/NAME.wasm.
#
# Plugins are discovered, not listed: every folder plugins/NAME/ and
# plugins/testing/NAME/ is a plugin named NAME, built by its kind:
#   rust    Cargo.toml (package name = NAME, a workspace member): cargo,
#           wasm32-wasip2, profile `plugin`
#   python  app.py (+ world.txt): componentize-py, from PyPI
#   js      app.js (+ world.txt): componentize-js, from npm
# world.txt names the WIT world a Python or JavaScript plugin targets
# (`plugin-no-http` or `plugin`, see wit/README.md); Rust plugins get theirs
# from the SDK. Python and JavaScript builds are not byte-reproducible
# (see wit/README.md), so their manifest entries (NAME/manifest.toml) are
# gathered into plugins/dist/languages.toml, pinned to what was just built.
#
# The build is reproducible: the Rust toolchain is pinned
# (rust-toolchain.toml), dependencies are locked (--locked), and machine
# paths (the cargo home and this checkout) are remapped, so the same source
# gives the same bytes, and the same sha256 pins, on every machine. The
# Python and JavaScript toolchains are pinned by version and installed once
# into the target dir (toolchains/), so CI caches them with the Rust build.
#
# Usage:
#   plugins/build.sh              build every plugin (honours CARGO_HOME and
#                                 CARGO_TARGET_DIR)
#   plugins/build.sh --only KIND  build only the plugins of KIND (rust,
#                                 python or js)
#   plugins/build.sh --list KIND  print the plugin names of KIND (rust,
#                                 python, js or all), one a line
set -euo pipefail

COMPONENTIZE_PY=0.25.1
COMPONENTIZE_JS=0.23.0

plugins=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$plugins")

# Prints "KIND NAME DIR" for every plugin folder, sorted by name.
discover() {
    local dir name
    for dir in "$plugins"/*/ "$plugins"/testing/*/; do
        dir=${dir%/}
        name=$(basename "$dir")
        if [[ -f "$dir/Cargo.toml" ]]; then
            echo "rust $name $dir"
        elif [[ -f "$dir/app.py" ]]; then
            echo "python $name $dir"
        elif [[ -f "$dir/app.js" ]]; then
            echo "js $name $dir"
        fi
    done | sort -k2,2
}

if [[ "${1:-}" == "--list" ]]; then
    kind=${2:?"usage: plugins/build.sh --list rust|python|js|all"}
    discover | while read -r k name _; do
        if [[ "$kind" == all || "$kind" == "$k" ]]; then echo "$name"; fi
    done
    exit 0
fi

only=all
if [[ "${1:-}" == "--only" ]]; then
    only=${2:?"usage: plugins/build.sh --only rust|python|js"}
    shift 2
fi

# A relative CARGO_TARGET_DIR means relative to where we were started.
if [[ -n "${CARGO_TARGET_DIR:-}" && "${CARGO_TARGET_DIR}" != /* ]]; then
    export CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"
fi
cd "$root"
cargo_home=${CARGO_HOME:-$HOME/.cargo}
target_dir=${CARGO_TARGET_DIR:-$root/target}
toolchains="$target_dir/toolchains"
dist="$plugins/dist"
mkdir -p "$dist"

# The pinned manifest of the Python and JavaScript plugins built here.
languages="$dist/languages.toml"
languages_tmp="$dist/.languages.toml.tmp"
printf '# Written by plugins/build.sh: the Python and JavaScript plugins, pinned\n# to the components it built. Paths are relative to this folder.\n' >"$languages_tmp"
pin_entry() {
    local sha
    if [[ -f "$2/tests.toml" ]]; then
        mkdir -p "$dist/tests"
        cp "$2/tests.toml" "$dist/tests/$1.toml"
    fi
    sha=$(sha256sum "$dist/$1.wasm" | cut -d' ' -f1)
    {
        echo
        sed "/^\[plugins\.$1\]\$/a sha256 = \"$sha\"" "$2/manifest.toml"
    } >>"$languages_tmp"
}

# Copy then rename, so a reader never sees a half-written component.
publish() {
    cp "$2" "$dist/.$1.wasm.tmp"
    mv "$dist/.$1.wasm.tmp" "$dist/$1.wasm"
    echo "built plugins/dist/$1.wasm" >&2
}

world_of() {
    local world
    world=$(tr -d '[:space:]' <"$1/world.txt" 2>/dev/null || true)
    if [[ "$world" != plugin && "$world" != plugin-no-http ]]; then
        echo "$1/world.txt must name the WIT world: plugin or plugin-no-http" >&2
        exit 1
    fi
    echo "$world"
}

rust=() python=() js=()
while read -r kind name dir; do
    if [[ "$only" != all && "$only" != "$kind" ]]; then continue; fi
    case $kind in
    rust)
        crate=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -n1)
        if [[ "$crate" != "$name" ]]; then
            echo "$dir/Cargo.toml: the package must be named after its folder ($name), not $crate" >&2
            exit 1
        fi
        rust+=("$name")
        ;;
    python) python+=("$name $dir") ;;
    js) js+=("$name $dir") ;;
    esac
done < <(discover)

if ((${#rust[@]})); then
    if command -v rustup >/dev/null 2>&1; then
        if ! rustup target list --installed | grep -qx wasm32-wasip2; then
            echo "installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)" >&2
            rustup target add wasm32-wasip2 >&2
        fi
    fi
    # Separated by 0x1f so that paths with spaces survive. The last matching
    # prefix wins, so the target dir (build-script output) goes last: it may
    # lie inside the checkout.
    sep=$'\x1f'
    export CARGO_ENCODED_RUSTFLAGS="--remap-path-prefix=${cargo_home}=/cargo${sep}--remap-path-prefix=${root}=/portcullis${sep}--remap-path-prefix=${target_dir}=/target"
    packages=()
    for crate in "${rust[@]}"; do packages+=(-p "$crate"); done
    cargo build --profile plugin --locked --target wasm32-wasip2 "${packages[@]}" "$@"
    unset CARGO_ENCODED_RUSTFLAGS
    for crate in "${rust[@]}"; do
        publish "$crate" "$target_dir/wasm32-wasip2/plugin/$crate.wasm"
    done
fi

if ((${#python[@]})); then
    venv="$toolchains/componentize-py-$COMPONENTIZE_PY"
    if [[ ! -x "$venv/bin/componentize-py" ]]; then
        echo "installing componentize-py $COMPONENTIZE_PY into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY" >&2
    fi
    for entry in "${python[@]}"; do
        read -r name dir <<<"$entry"
        out="$target_dir/python-plugins/$name"
        mkdir -p "$out"
        (cd "$dir" && PYTHONDONTWRITEBYTECODE=1 "$venv/bin/componentize-py" -d "$root/wit" -w "$(world_of "$dir")" \
            componentize app -o "$out/$name.wasm" >&2)
        # The interpreter's pre-initialisation writes bytecode next to app.py.
        rm -rf "$dir/__pycache__"
        publish "$name" "$out/$name.wasm"
        pin_entry "$name" "$dir"
    done
fi

if ((${#js[@]})); then
    prefix="$toolchains/componentize-js-$COMPONENTIZE_JS"
    bin="$prefix/node_modules/.bin/componentize-js"
    if [[ ! -x "$bin" ]]; then
        echo "installing componentize-js $COMPONENTIZE_JS into $prefix" >&2
        mkdir -p "$prefix"
        npm install --no-audit --no-fund --silent --prefix "$prefix" \
            "@bytecodealliance/componentize-js@$COMPONENTIZE_JS" >&2
    fi
    for entry in "${js[@]}"; do
        read -r name dir <<<"$entry"
        out="$target_dir/js-plugins/$name"
        mkdir -p "$out"
        (cd "$dir" && "$bin" app.js --wit "$root/wit" --world-name "$(world_of "$dir")" \
            --out "$out/$name.wasm" >&2)
        publish "$name" "$out/$name.wasm"
        pin_entry "$name" "$dir"
    done
fi

if [[ "$only" == all ]]; then
    mv "$languages_tmp" "$languages"
    echo "wrote plugins/dist/languages.toml" >&2
else
    rm -f "$languages_tmp"
fi
