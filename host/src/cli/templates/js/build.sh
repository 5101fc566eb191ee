#!/usr/bin/env bash
# Builds {{name}}.wasm next to this script with componentize-js (installed
# once into node_modules), against the `plugin-no-http` world in wit/.
# To call HTTP APIs with `fetch`, target the `plugin` world, drop
# `--disable http fetch-event` and add `http = [...]` to the manifest.
# componentize-js output is not byte-reproducible: pin what you built.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
if [[ ! -x node_modules/.bin/componentize-js ]]; then
    npm install --no-audit --no-fund --silent >&2
fi
npm run --silent build >&2
echo "built {{name}}.wasm; now: portcullis pin $here/portcullis.toml" >&2
