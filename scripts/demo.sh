#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install, bring up a 4-node lab,
# bake a new version of the web role and roll it out under live traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

rollout lab up --nodes 4
version="2.0.$(date +%s)"
rollout build --role web --version "$version"
rollout run --role web --version "$version"
rollout lab status
echo
echo "The lab is still up: try 'curl -s http://127.0.0.1:8080/' or '.venv/bin/rollout --help'."
echo "Remove it with: .venv/bin/rollout lab down   (as root)"
