"""Hardening on the real lab (issue 14): the readiness probe's deadline against
a node that answers one byte per second, private data directories that still
give the nodes a readable root file system, and an authenticated debootstrap."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.backends.lab import nodes
from rollout.backends.lab.base import debootstrap_command
from rollout.backends.lab.images import LabImageStore
from rollout.backends.lab.provider import LabProvider
from rollout.model import Node
from rollout.testing.lab import LabHandle
from tests.functional.rollout_cli import cli

pytestmark = pytest.mark.functional

# A server on the service port that sends a complete, empty 200 answer one
# byte per second (19 s): ready to a probe with only a per-read timeout.
_SLOW = """
import socket, time
srv = socket.create_server(("0.0.0.0", {port}), reuse_port=True)
while True:
    conn, _ = srv.accept()
    conn.recv(65536)
    for b in b"HTTP/1.1 200 OK\\r\\n\\r\\n":
        time.sleep(1)
        try:
            conn.send(bytes([b]))
        except OSError:
            break
    conn.close()
"""


def _ssh(lab: LabHandle, node: str, command: str) -> str:
    proc = nodes.ssh_run(nodes.ssh_target(lab.context, node), command, timeout=30)
    assert proc.returncode == 0, f"{node}: {command}: {proc.stderr}"
    return proc.stdout


@pytest.fixture
def provider(lab: LabHandle) -> LabProvider:
    return LabProvider(lab.context, lab.env.pool("web"), LabImageStore(lab.data))


@pytest.fixture
def slow_node(lab: LabHandle, provider: LabProvider) -> Iterator[Node]:
    """A web node whose service port answers one byte per second (nginx stopped)."""
    node = provider.list()[0]
    port = lab.env.pool("web").settings.service_port
    script = _SLOW.format(port=port)
    _ssh(lab, node.name, "systemctl stop nginx")
    _ssh(lab, node.name, f"systemd-run --unit=rollout-slow-http python3 -c {shlex.quote(script)}")
    try:
        yield node
    finally:
        _ssh(lab, node.name, "systemctl stop rollout-slow-http; systemctl start nginx")
        deadline = time.monotonic() + 30
        while not provider.readiness(node).ready and time.monotonic() < deadline:
            time.sleep(0.5)


def test_lab_readiness_returns_by_its_deadline_against_a_byte_a_second_node(
    provider: LabProvider, slow_node: Node
) -> None:
    time.sleep(1.0)  # the slow server is listening
    started = time.monotonic()
    readiness = provider.readiness(slow_node)
    took = time.monotonic() - started
    # TCP 0.5 s + one ssh call (well under 2 s here) + HTTP 2 s, with slack.
    assert took < 5.0, f"readiness took {took:.1f}s"
    assert not readiness.ready
    assert "within 2s" in readiness.detail, readiness.detail


def _mode(path: os.PathLike[str] | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_cli_leaves_the_lab_data_dir_private(lab: LabHandle) -> None:
    for args in (("lab", "status"), ("history",)):
        proc = cli(lab, *args)
        assert proc.returncode == 0, proc.stderr
    root = lab.data.root
    assert _mode(root) == 0o700
    assert _mode(root / "journal.sqlite") == 0o600
    for name in ("lab", "images", "logs", "evidence"):
        assert _mode(root / name) & 0o077 == 0, name
    for record in (root / "lab" / "nodes").glob("*/record.json"):
        assert _mode(record) == 0o600, record


def test_a_node_started_under_the_clis_umask_has_a_readable_root(
    lab: LabHandle, provider: LabProvider
) -> None:
    """The CLI runs with umask 077; the nodes it starts must not inherit it."""
    before = {n.name for n in provider.list()}
    saved = os.umask(0o077)
    try:
        lab.up(nodes=len(before) + 1)
    finally:
        os.umask(saved)
    try:
        (newest,) = [n for n in provider.list() if n.name not in before]
        modes = _ssh(lab, newest.name, "stat -c '%a %n' / /etc /etc/passwd /tmp").split("\n")
        assert modes[:4] == ["755 /", "755 /etc", "644 /etc/passwd", "1777 /tmp"], modes
        # A service that is not root can read the file system.
        assert _ssh(lab, newest.name, "setpriv --reuid=65534 --regid=65534 --clear-groups "
                    "cat /etc/os-release").strip()
    finally:
        lab.up(nodes=len(before))


def test_the_base_image_build_refuses_to_go_unauthenticated(tmp_path: Path) -> None:
    """With the archive keyring hidden (a private mount namespace), the base's
    debootstrap stops at once instead of installing unauthenticated packages."""
    if os.geteuid() != 0 or shutil.which("debootstrap") is None or shutil.which("unshare") is None:
        pytest.skip("needs root, debootstrap and unshare")
    hide = 'mount -t tmpfs tmpfs /usr/share/keyrings && exec "$@"'
    cmd = ["unshare", "-m", "sh", "-c", hide, "sh", *debootstrap_command(tmp_path / "rootfs")]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("debootstrap went on without a keyring (still running after 30 s)")
    assert proc.returncode != 0
    assert "Keyring-based check was requested" in proc.stderr + proc.stdout
    assert time.monotonic() - started < 10
