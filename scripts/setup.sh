#!/usr/bin/env bash
# Install everything rollout needs on Debian 12, idempotently:
#   the Debian packages, a virtual environment with rollout in it (.venv/),
#   and the lab's base image cache (a debootstrap of bookworm, about a minute once).
# Needs root: apt, network namespaces and systemd-nspawn do.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "scripts/setup.sh needs root (apt-get, network namespaces, systemd-nspawn): run it as root, or through sudo" >&2
    exit 5
fi
step() { echo "setup: [$1/4] $2"; }

packages=(python3 python3-venv python3-dev openssh-client openssh-server haproxy prometheus
          systemd-container debootstrap iproute2 iptables wrk socat sqlite3 postgresql git
          ca-certificates curl chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
step 1 "Debian packages"
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup:       installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's own interpreter, so a fresh machine needs nothing but apt.
PY=${ROLLOUT_PYTHON:-/usr/bin/python3}
step 2 "virtual environment (.venv, $PY)"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
step 3 "rollout and its Python dependencies (log: .venv/pip.log)"
# pip's own chatter (deprecation banners, resolver notes) goes to the log; on a
# failure its tail is shown.
if ! { .venv/bin/python -m pip install -q --upgrade pip \
       && .venv/bin/python -m pip install -q -e '.[dev]'; } >.venv/pip.log 2>&1; then
    tail -n 30 .venv/pip.log >&2
    echo "setup: pip install failed (full log: .venv/pip.log)" >&2
    exit 5
fi
.venv/bin/python -c "import rollout, ansible_runner, testinfra, fabric, boto3" \
    || { echo "setup: the virtual environment is incomplete" >&2; exit 5; }

step 4 "the lab's base image cache"
.venv/bin/rollout lab prepare
