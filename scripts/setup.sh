#!/usr/bin/env bash
# Install everything rollout needs on Debian 12, idempotently:
#   the Debian packages, a virtual environment with rollout in it (.venv/),
#   and the lab's base image cache (a debootstrap of bookworm, about a minute once).
# Needs root: apt, network namespaces and systemd-nspawn do.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "scripts/setup.sh needs root (apt-get, network namespaces, systemd-nspawn): run it with sudo" >&2
    exit 5
fi

packages=(python3 python3-venv python3-dev openssh-client openssh-server haproxy
          systemd-container debootstrap iproute2 iptables wrk socat sqlite3 postgresql git
          ca-certificates curl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's own interpreter, so a fresh machine needs nothing but apt.
PY=${ROLLOUT_PYTHON:-/usr/bin/python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $PY"
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
echo "setup: installing rollout and its dependencies into .venv"
.venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || true
.venv/bin/python -c "import rollout, ansible_runner, testinfra, fabric, boto3" \
    || { echo "setup: the virtual environment is incomplete" >&2; exit 5; }

echo "setup: preparing the lab's base image cache"
.venv/bin/rollout lab prepare
