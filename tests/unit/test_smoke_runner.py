"""Pure parts of the smoke runner: ssh_config, JUnit parsing, HTTP checks, time bounds."""

from __future__ import annotations

import http.server
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.config import HttpCheck, PoolSettings
from rollout.drivers.smoke import (
    TestinfraSmokeRunner,
    _run_bounded,
    http_check,
    junit_counts,
    junit_failures,
    ssh_config_text,
)
from rollout.model import Image, Node, NodeState, SshTarget
from rollout.protocols import SmokeRunner
from tests.loopback import serve


def test_ssh_config_carries_the_target_options(tmp_path: Path) -> None:
    target = SshTarget(host="10.232.0.9", key_file="/k/id", known_hosts="/k/known_hosts")
    text = ssh_config_text("10.232.0.9", target, tmp_path)
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "Host 10.232.0.9"
    for expected in ("HostName 10.232.0.9", "User root", "Port 22", "IdentityFile /k/id",
                     "UserKnownHostsFile /k/known_hosts", "StrictHostKeyChecking yes",
                     "BatchMode yes", "ControlMaster auto", "ControlPersist 30s"):
        assert expected in lines
    control = next(line for line in lines if line.startswith("ControlPath"))
    assert "%C" not in control and str(tmp_path) in control


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="2" tests="3">
<testcase classname="test_web" name="test_nginx_running_and_enabled[ssh://10.0.0.2]"/>
<testcase classname="test_web" name="test_healthz_ok[ssh://10.0.0.2]">
  <failure message="AssertionError: /healthz answered 500: unhealthy&#10;assert 500 == 200"
    >x</failure>
</testcase>
<testcase classname="test_web" name="test_version[ssh://10.0.0.2]">
  <error message="">connection refused</error>
</testcase>
</testsuite></testsuites>
"""


def test_junit_failures_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "n.xml"
    path.write_text(JUNIT)
    assert junit_failures(path) == [
        ("test_healthz_ok", "AssertionError: /healthz answered 500: unhealthy"),
        ("test_version", "connection refused"),
    ]
    assert junit_counts(path) == (3, 2)
    assert junit_failures(tmp_path / "missing.xml") == []
    (tmp_path / "bad.xml").write_text("<testsuites><test")
    assert junit_counts(tmp_path / "bad.xml") == (0, 0)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 500 if self.path == "/broken" else 200
        body = b"node=n1 version=2.0.0\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    with serve(_Handler) as port:
        yield port


def test_http_checks(server: int) -> None:
    assert http_check("127.0.0.1", server, HttpCheck(path="/healthz"), 2) is None
    assert http_check("127.0.0.1", server, HttpCheck(path="/", contains="version=2.0.0"),
                      2) is None
    assert http_check("127.0.0.1", server, HttpCheck(path="/broken"), 2) == (
        "GET /broken: expected status 200, got 500")
    assert "does not contain '3.0.0'" in str(
        http_check("127.0.0.1", server, HttpCheck(path="/", contains="3.0.0"), 2))
    assert "no answer" in str(http_check("127.0.0.1", 1, HttpCheck(), 2))


def test_http_only_runner(server: int, tmp_path: Path) -> None:
    settings = PoolSettings.model_validate({
        "service_port": server,
        "haproxy": {"backend": "web", "frontend_port": 80},
        "smoke": {"suite": None, "http_checks": [{"path": "/healthz"}, {"path": "/broken"}]},
    })
    runner = TestinfraSmokeRunner(tmp_path, settings, lambda n: SshTarget(host=n.address),
                                  tmp_path / "evidence", timeout=10)
    assert isinstance(runner, SmokeRunner)
    node = Node("web-1", "127.0.0.1", "web", "lab", "web-2.0.0-aaaaaaaa", "2.0.0",
                NodeState.RUNNING, 0.0)
    result = runner.run(node, Image("web-2.0.0-aaaaaaaa", "web", "2.0.0", 0.0))
    assert not result.passed
    assert result.failures == ("http /broken",)
    assert "expected status 200, got 500" in result.summary
    assert result.junit_path is None


def test_bounded_run_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = (
        "import os, subprocess, sys, time;"
        f"p = subprocess.Popen(['sleep', '30']); open({str(pidfile)!r}, 'w').write(str(p.pid));"
        "time.sleep(30)"
    )
    started = time.monotonic()
    _output, rc = _run_bounded([sys.executable, "-c", script], dict(os.environ), tmp_path, 1.0)
    assert rc is None
    assert time.monotonic() - started < 5
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{grandchild}").exists() and time.monotonic() < deadline:
        stat = Path(f"/proc/{grandchild}/stat").read_text().rpartition(")")[2].split()[0]
        if stat == "Z":
            break
        time.sleep(0.05)
    alive = Path(f"/proc/{grandchild}/stat").exists() and Path(
        f"/proc/{grandchild}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    assert not alive
