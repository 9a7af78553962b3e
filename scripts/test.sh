#!/usr/bin/env bash
# Install what the tests need (scripts/setup.sh: Debian packages, .venv, the
# base image cache), then run every suite: unit (pure, fakes), contract, aws
# (moto's real server) and functional (the real lab: nspawn, HAProxy, Ansible),
# after the static checks (layer contracts, mypy, ruff, ansible-lint).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not functional"`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# The functional tests bring up their own lab in a temporary data directory but
# share the base image cache that setup just prepared.
data="${ROLLOUT_DATA_DIR:-/var/lib/rollout}"
export ROLLOUT_BASE_CACHE="${ROLLOUT_BASE_CACHE:-$data/base}"
# Static checks first (seconds): the layer contracts (import-linter), types
# (mypy strict) and lint (ruff). Any failure fails the run.
echo "test: import-linter (layer contracts)"
.venv/bin/lint-imports --no-cache
echo "test: mypy --strict"
.venv/bin/mypy
echo "test: ruff"
.venv/bin/ruff check rollout tests bench
echo "test: ansible-lint (roles/, playbooks/)"
.venv/bin/ansible-lint -q roles playbooks
exec .venv/bin/python -m pytest tests "$@"
