#!/usr/bin/env bash
# Builds {{name}}.wasm next to this script with componentize-py (installed
# once into .venv), against the `plugin-no-http` world in wit/.
# componentize-py output is not byte-reproducible: pin what you built.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
if [[ ! -x .venv/bin/componentize-py ]]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check componentize-py==0.25.1 >&2
fi
PYTHONDONTWRITEBYTECODE=1 .venv/bin/componentize-py -d wit -w plugin-no-http \
    componentize app -o ".{{name}}.wasm.tmp" >&2
rm -rf __pycache__
mv ".{{name}}.wasm.tmp" "{{name}}.wasm"
echo "built {{name}}.wasm; now: portcullis pin $here/portcullis.toml" >&2
