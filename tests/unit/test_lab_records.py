"""Node records round-trip and are written atomically; nspawn command lines."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from rollout.backends.lab.nodes import _ensure_client_key, node_running, nspawn_command
from rollout.backends.lab.records import (
    LabContext,
    NodeRecord,
    read_record,
    read_records,
    write_record,
)
from rollout.config import LabSettings
from rollout.errors import ConfigError, DriverError
from rollout.paths import DataDir


def _lab(tmp_path: Path) -> LabContext:
    return LabContext(DataDir(tmp_path), LabSettings(bridge="rlab1", subnet="10.231.1.0/24"))


def _rec(name: str = "web-3f9a1c", **kw: object) -> NodeRecord:
    base: dict[str, object] = dict(
        name=name, address="10.231.1.2", role="web", env="lab", image_id="web-1.0.0-abc",
        image_version="1.0.0", rollout_id=None, created_at=1.5, pid=None, writable=False,
        image_dir="/images/web/1", console_log="/x/console.log",
    )
    base.update(kw)
    return NodeRecord(**base)  # type: ignore[arg-type]


def test_record_round_trip(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    rec = _rec(rollout_id="r-1", pid=1234)
    write_record(lab, rec)
    assert read_record(lab, rec.name) == rec
    assert read_records(lab) == [rec]
    leftovers = [p.name for p in lab.node_dir(rec.name).iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_records_are_listed_oldest_first_and_missing_is_none(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    write_record(lab, _rec("web-b", created_at=2.0, address="10.231.1.3"))
    write_record(lab, _rec("web-a", created_at=3.0))
    assert [r.name for r in read_records(lab)] == ["web-b", "web-a"]
    assert read_record(lab, "web-zz") is None


def test_corrupt_record_names_the_file(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    lab.node_dir("web-x").mkdir(parents=True)
    (lab.node_dir("web-x") / "record.json").write_text("{not json")
    with pytest.raises(DriverError, match=r"web-x/record.json"):
        read_record(lab, "web-x")


def test_record_with_bad_name_is_refused(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    lab.node_dir("web-x").mkdir(parents=True)
    data = _rec().to_json() | {"name": "web;reboot"}
    (lab.node_dir("web-x") / "record.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError):
        read_record(lab, "web-x")


def test_nspawn_command_volatile_unless_writable(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    cmd = nspawn_command(lab, _rec())
    assert cmd[:5] == ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-b"]
    assert "--volatile=overlay" in cmd
    assert cmd[cmd.index("-M") + 1] == "web-3f9a1c"
    assert cmd[cmd.index("-D") + 1] == "/images/web/1"
    assert "--network-namespace-path=/run/netns/web-3f9a1c" in cmd
    assert f"--bind-ro={lab.node_dir('web-3f9a1c')}/ssh:/etc/ssh/node" in cmd
    assert "--volatile=overlay" not in nspawn_command(lab, _rec(writable=True))


def test_a_bare_pid_is_not_trusted(tmp_path: Path) -> None:
    import os

    lab = _lab(tmp_path)
    assert not node_running(lab, _rec(pid=os.getpid()))  # alive, but not our nspawn
    assert not node_running(lab, _rec(pid=None))


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_parallel_launches_make_one_client_key_pair(tmp_path: Path) -> None:
    """Launches in parallel threads all need the lab's client key: exactly one
    pair is made, and the .pub every node gets authorises that private key."""
    lab = LabContext(DataDir(tmp_path / "data"), LabSettings())
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []
    pubs: list[str] = []

    def launch() -> None:
        barrier.wait()
        try:
            key = _ensure_client_key(lab)
            pubs.append(key.with_suffix(".pub").read_text())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=launch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(lab.client_key)],
                             capture_output=True, text=True, check=True).stdout.split()[:2]
    assert {tuple(p.split()[:2]) for p in pubs} == {tuple(derived)}
    assert sorted(p.name for p in lab.client_key.parent.iterdir()) == ["id_ed25519",
                                                                       "id_ed25519.pub"]
