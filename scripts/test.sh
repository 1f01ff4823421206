#!/usr/bin/env bash
# Install what is missing (with the test peers), then run the test suite.
# Arguments pass through to pytest, e.g. ./scripts/test.sh tests/config -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/install.sh" --test
exec "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
