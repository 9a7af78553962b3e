"""Program checks name the Debian package; the lab status JSON contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.backends.lab import system
from rollout.backends.lab.env import LabStatus, NodeStatus, _lb_state
from rollout.errors import DriverError, EnvironmentProblem
from rollout.model import Admin, Health, Member


def test_missing_programs_name_their_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(system, "_EXTRA_DIRS", ())
    with pytest.raises(EnvironmentProblem) as err:
        system.require_programs(["systemd-nspawn", "sshd", "ip"])
    text = str(err.value)
    assert "systemd-nspawn (package systemd-container)" in text
    assert "sshd (package openssh-server)" in text
    assert "ip (package iproute2)" in text
    assert "apt-get install -y iproute2 openssh-server systemd-container" in text


def test_run_raises_with_stderr_and_names_a_missing_program() -> None:
    with pytest.raises(DriverError, match="boom"):
        system.run(["sh", "-c", "echo boom >&2; exit 3"], what="a test")
    with pytest.raises(EnvironmentProblem, match="program 'no-such-tool' not found"):
        system.run(["no-such-tool"])
    assert system.run(["sh", "-c", "exit 4"], check=False).returncode == 4


def test_missing_program_not_in_table_is_named() -> None:
    with pytest.raises(EnvironmentProblem, match="no-such-tool"):
        system.require_programs(["no-such-tool"])


@pytest.mark.parametrize(
    ("admin", "health", "expected"),
    [
        (Admin.READY, Health.UP, "up"),
        (Admin.READY, Health.DOWN, "down"),
        (Admin.READY, Health.UNKNOWN, "unknown"),
        (Admin.DRAIN, Health.UP, "drain"),
        (Admin.MAINT, Health.UP, "maint"),
    ],
)
def test_lb_state_words(admin: Admin, health: Health, expected: str) -> None:
    assert _lb_state(Member(slot="node1", target="10.0.0.2", admin=admin, health=health)) == (
        expected
    )
    assert _lb_state(None) == "none"


def test_status_json_contract() -> None:
    node = NodeStatus(name="web-3f9a1c", address="10.231.1.2", image="1.0.0",
                      image_id="web-1.0.0-abcd1234", role="web", lb_state="up", slot="node1",
                      state="running")
    status = LabStatus(env="lab", frontends={"web": "http://127.0.0.1:8080/"}, nodes=[node],
                       haproxy=True, bridge="rollout0", subnet="10.231.0.0/24")
    data = status.to_json()
    assert data["frontend"] == "http://127.0.0.1:8080/"
    assert data["nodes"] == [{
        "name": "web-3f9a1c", "address": "10.231.1.2", "image": "1.0.0",
        "image_id": "web-1.0.0-abcd1234", "role": "web", "lb_state": "up", "slot": "node1",
        "state": "running",
    }]
