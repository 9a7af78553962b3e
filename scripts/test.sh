#!/usr/bin/env bash
# Install what the tests need (scripts/setup.sh), then run every suite:
# unit (pure, fakes), aws (moto's real server) and functional (the real lab).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest tests "$@"
