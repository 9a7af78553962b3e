"""Forensics over SSH against a real sshd on 127.0.0.1:2399.

The sshd runs with its own host key, authorized key and config in a temp
directory, in the foreground so that its PID is ours to stop. The "node" is
this machine, so the systemd commands report whatever systemd says here
(there is no systemd as PID 1): the test asserts that each outcome is
recorded, whatever it is.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rollout.drivers.forensics import collect_forensics
from rollout.model import SshTarget
from rollout.paths import DataDir

pytestmark = pytest.mark.functional

HOST, PORT = "127.0.0.1", 2399
NOW = 1715742000.0  # 2024-05-15 03:00:00 UTC


@dataclass(frozen=True)
class Sshd:
    client_key: Path
    known_hosts: Path
    other_host_pub: str  # a host key that is NOT the server's
    dir: Path

    def target(self, **changes: object) -> SshTarget:
        base = {"host": HOST, "port": PORT, "user": "root", "key_file": str(self.client_key),
                "known_hosts": str(self.known_hosts), "host_key_policy": "verify"}
        base.update(changes)
        return SshTarget(**base)  # type: ignore[arg-type]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)
    return path.with_suffix(".pub").read_text().strip()


def _wait_listening(proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}")
        try:
            with socket.create_connection((HOST, PORT), timeout=0.5) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {HOST}:{PORT}")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if shutil.which("sshd", path="/usr/sbin:/usr/bin") is None:
        pytest.skip("openssh-server is not installed")
    d = tmp_path_factory.mktemp("sshd")
    host_pub = _keygen(d / "host_ed25519")
    client_pub = _keygen(d / "client_ed25519")
    other_pub = _keygen(d / "other_ed25519")
    (d / "authorized_keys").write_text(client_pub + "\n")
    (d / "known_hosts").write_text(f"[{HOST}]:{PORT} {host_pub}\n")
    (d / "sshd_config").write_text(
        f"Port {PORT}\nListenAddress {HOST}\nHostKey {d}/host_ed25519\n"
        f"PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    # sshd refuses to start without its privilege separation directory. It is
    # shared with any other sshd on the machine, so it is left in place.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = open(d / "sshd.log", "wb")  # noqa: SIM115 - closed in the teardown
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, time.monotonic() + 10)
        yield Sshd(d / "client_ed25519", d / "known_hosts", other_pub, d)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _summary(directory: Path) -> dict[str, object]:
    return json.loads((directory / "summary.json").read_text())  # type: ignore[no-any-return]


def test_collects_every_command_into_the_evidence_directory(sshd: Sshd, tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    report = collect_forensics("web-3", sshd.target(), data, now=NOW)

    assert report.connected, report.error
    assert report.directory == tmp_path / "evidence" / "forensics" / "web-3-20240515T030000Z"
    files = sorted(p.name for p in report.directory.iterdir())
    assert files == ["disk.txt", "failed-units.txt", "journal.txt", "memory.txt",
                     "summary.json", "system-state.txt"]
    assert "Filesystem" in (report.directory / "disk.txt").read_text()
    assert "Mem:" in (report.directory / "memory.txt").read_text()
    status = {c.name: c for c in report.commands}
    assert status["disk"].status == "ok" and status["memory"].status == "ok"
    # every command ran to an exit code; whether systemd answers here is not ours to decide
    assert report.complete
    summary = _summary(report.directory)
    assert summary["node"] == "web-3" and summary["connected"] is True
    assert summary["port"] == PORT and summary["collected_at"] == NOW
    assert [c["name"] for c in summary["commands"]] == [  # type: ignore[attr-defined]
        "failed-units", "journal", "disk", "memory", "system-state"]


def test_a_failing_or_missing_command_is_recorded_and_collection_goes_on(
        sshd: Sshd, tmp_path: Path) -> None:
    commands = [("missing", "no-such-program-xyz --now"), ("false", "echo out; echo err >&2; "
                                                                   "exit 3"), ("disk", "df -h")]
    report = collect_forensics("web-3", sshd.target(), DataDir(tmp_path), now=NOW,
                               commands=commands)
    status = {c.name: c for c in report.commands}
    assert status["missing"].status == "failed" and status["missing"].exit_code == 127
    assert "not found" in status["missing"].error
    assert status["false"].exit_code == 3 and status["false"].error == "err"
    assert (report.directory / "false.txt").read_text() == "out\n\n--- stderr ---\nerr\n"
    assert status["disk"].status == "ok"


def test_a_command_that_hangs_times_out(sshd: Sshd, tmp_path: Path) -> None:
    started = time.monotonic()
    report = collect_forensics("web-3", sshd.target(), DataDir(tmp_path), now=NOW,
                               commands=[("slow", "echo started; sleep 30"), ("disk", "df -h")],
                               command_timeout=1.0)
    status = {c.name: c for c in report.commands}
    assert status["slow"].status == "timeout" and status["slow"].exit_code is None
    assert status["disk"].status == "ok"
    assert time.monotonic() - started < 10
    assert not report.complete


def test_an_unknown_host_key_is_rejected_and_recorded(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    report = collect_forensics("web-3", sshd.target(known_hosts=str(empty)), DataDir(tmp_path),
                               now=NOW)
    assert not report.connected
    assert "unknown host key" in report.error
    assert {c.status for c in report.commands} == {"skipped"}
    assert _summary(report.directory)["connected"] is False
    assert empty.read_text() == ""  # verify never learns keys


def test_a_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[{HOST}]:{PORT} {sshd.other_host_pub}\n")
    for policy in ("verify", "accept-new"):
        report = collect_forensics("web-3", sshd.target(known_hosts=str(wrong),
                                                        host_key_policy=policy),
                                   DataDir(tmp_path), now=NOW)
        assert not report.connected
        assert "CHANGED" in report.error


def test_accept_new_learns_an_unknown_key(sshd: Sshd, tmp_path: Path) -> None:
    learned = tmp_path / "learned_known_hosts"
    learned.write_text("")
    target = sshd.target(known_hosts=str(learned), host_key_policy="accept-new")
    first = collect_forensics("web-3", target, DataDir(tmp_path), now=NOW,
                              commands=[("disk", "df -h")])
    assert first.connected
    assert f"[{HOST}]:{PORT}" in learned.read_text()
    again = collect_forensics("web-3", sshd.target(known_hosts=str(learned)), DataDir(tmp_path),
                              now=NOW, commands=[("disk", "df -h")])
    assert again.connected
    # same second: the second run gets its own directory
    assert again.directory.name == "web-3-20240515T030000Z-2"


def test_a_wrong_client_key_is_an_authentication_failure(sshd: Sshd, tmp_path: Path) -> None:
    report = collect_forensics("web-3", sshd.target(key_file=str(sshd.dir / "other_ed25519")),
                               DataDir(tmp_path), now=NOW)
    assert not report.connected
    assert "authentication failed" in report.error
