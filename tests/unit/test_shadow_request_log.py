"""The request log: the frontend lines the lab's HAProxy config gets, the
parsing of a logged line, and the ring a bound socket fills."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.core.shadow import Request
from rollout.drivers.haproxy.config import BackendSpec, render_config
from rollout.drivers.haproxy.requestlog import RequestLog, captured, parse_line, socket_path

HEADERS = captured(("cookie",))


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A unix socket's path must be short (108 bytes): not pytest's tmp_path.
    path = Path(tempfile.mkdtemp(prefix="shd", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _config(lab: Path, request_log: bool) -> str:
    spec = BackendSpec(name="web", frontend_address="127.0.0.1", frontend_port=18799, slots=2,
                       request_log=request_log, log_headers=HEADERS)
    return render_config([spec], socket_path=lab / "admin.sock", state_file=lab / "state",
                         request_log_dir=lab)


def test_only_a_gated_pool_logs_its_requests(short_dir: Path) -> None:
    assert "log unix@" not in _config(short_dir, request_log=False)
    text = _config(short_dir, request_log=True)
    assert f"log unix@{short_dir}/requests-web.sock len 8192 format raw" in text
    assert "capture request header Cookie len 256" in text
    assert HEADERS[0] == "Host"


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy")
def test_haproxy_accepts_the_logging_frontend(short_dir: Path) -> None:
    cfg = short_dir / "haproxy.cfg"
    cfg.write_text(_config(short_dir, request_log=True))
    check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr


# What HAProxy 2.6 sends for the rendered log-format (recorded).
LINE = (b'{"f":"fe_web","m":"GET","u":"\\/catalog?x=\\"1\\"",'
        b'"h":["web.lab","a\\"b|c","-","-","curl\\/7.88","s=1"]}\n')


@pytest.mark.parametrize(("line", "frontend", "out"), [
    (LINE, "fe_web", Request("GET", '/catalog?x="1"', (
        ("Host", "web.lab"), ("Accept", 'a"b|c'), ("User-Agent", "curl/7.88"),
        ("Cookie", "s=1")))),
    (b"<134>Dec  1 12:00:00 haproxy[1]: " + LINE, "fe_web", Request("GET", '/catalog?x="1"', (
        ("Host", "web.lab"), ("Accept", 'a"b|c'), ("User-Agent", "curl/7.88"),
        ("Cookie", "s=1")))),
    (LINE, "fe_api", None),
    (b'{"f":"fe_web","m":"GET","u":"-","h":[]}', "fe_web", None),
    (b"not json at all", "fe_web", None),
    (b'{"f":"fe_web","m":"HEAD","u":"\\/"}', "fe_web", Request("HEAD", "/")),
])
def test_parse_line(line: bytes, frontend: str, out: Request | None) -> None:
    assert parse_line(line, frontend, HEADERS) == out


def _send(path: Path, *lines: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for line in lines:
            s.sendto(line, str(path))


def _wait_for(log: RequestLog, n: int) -> tuple[Request, ...]:
    deadline = time.monotonic() + 5
    while len(log.recent()) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return log.recent()


def test_the_ring_keeps_the_newest_requests_and_the_socket_is_removed(short_dir: Path) -> None:
    path = socket_path(short_dir, "web")
    path.write_text("stale")  # left by a controller that was killed
    log = RequestLog(path, "fe_web", HEADERS, capacity=3)
    with log:
        assert path.is_socket()
        _send(path, *(b'{"f":"fe_web","m":"GET","u":"\\/p%d","h":[]}' % i for i in range(5)))
        _send(path, b'{"f":"fe_api","m":"GET","u":"\\/other","h":[]}')
        _send(path, b'{"f":"fe_web","m":"GET","u":"\\/last","h":[]}')
        seen = _wait_for(log, 3)
        deadline = time.monotonic() + 5
        while seen[-1].target != "/last" and time.monotonic() < deadline:
            time.sleep(0.02)
            seen = log.recent()
    assert [r.target for r in seen] == ["/p3", "/p4", "/last"]
    assert not path.exists()
    with pytest.raises(OSError):
        _send(path, LINE)  # nobody listens: the sender's line is refused, not queued
