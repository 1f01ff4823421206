#!/usr/bin/env bash
# Install what is missing, then run the gateway with config/gateway.toml.
# Arguments pass through to `dispatch-gateway serve`, e.g. --set sip.port=5062
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/install.sh"
exec "$ROOT/.venv/bin/dispatch-gateway" serve --config config/gateway.toml "$@"
