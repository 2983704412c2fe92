#!/usr/bin/env bash
# Installs what is missing, builds the release preset and starts the demo
# catalog server on 127.0.0.1:8080 with the in-memory backend.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh
cmake --preset release
cmake --build --preset release --target catalog_server
exec build/release/examples/catalog_server/catalog_server --port "${PORT:-8080}" "$@"
