"""Probes end by their deadline, whatever the peer does (issue 14, item 8).

A server on loopback sends one header byte per second: a probe with only a
per-read timeout would read for as long as the server likes. Every probe the
controller runs (the smoke gate's HTTP checks, the lab's and AWS's readiness)
must return within its deadline against it.
"""

from __future__ import annotations

import http.server
import socket
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from rollout.backends.aws.ec2 import ssh_port_probe, tcp_http_probe
from rollout.config import HttpCheck
from rollout.drivers.probe import ProbeError, http_get, tcp_open
from rollout.drivers.smoke import http_check
from rollout.model import Node, NodeState
from tests.loopback import serve
from tests.slow_server import SlowServer

# Scheduling slack on a loaded 2-core machine.
SLACK = 0.75


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"node=n1 ", b"version=2.0.0\n"):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        status = 503 if self.path == "/down" else 200
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


@pytest.fixture
def slow() -> Iterator[SlowServer]:
    with SlowServer(interval=1.0) as srv:
        yield srv


@pytest.fixture
def listener() -> Iterator[int]:
    """A port that accepts connections (and says nothing): a stand-in for sshd."""
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def _node(address: str = "127.0.0.1") -> Node:
    return Node(name="web-1", address=address, role="web", env="lab", image_id="web-1",
                image_version="1.0.0", state=NodeState.RUNNING, created_at=0.0)


T = TypeVar("T")


def _timed(func: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = func()
    return result, time.monotonic() - started


# -- answers ------------------------------------------------------------------


def test_http_get_reads_sized_and_chunked_answers(server: int) -> None:
    assert http_get("127.0.0.1", server, "/", 2.0).status == 200
    assert http_get("127.0.0.1", server, "/", 2.0).body == "node=n1 version=2.0.0\n"
    assert http_get("127.0.0.1", server, "/chunked", 2.0).body == "node=n1 version=2.0.0\n"
    assert http_get("127.0.0.1", server, "/down", 2.0, read_body=False).status == 503


def test_a_refused_connection_is_a_probe_error(listener: int) -> None:
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(ProbeError, match=rf"127.0.0.1:{port}"):
        http_get("127.0.0.1", port, "/", 1.0)
    with pytest.raises(ProbeError, match=rf"127.0.0.1:{port}"):
        tcp_open("127.0.0.1", port, 1.0)
    tcp_open("127.0.0.1", listener, 1.0)


def test_a_path_with_whitespace_is_refused_before_sending() -> None:
    with pytest.raises(ProbeError, match="whitespace"):
        http_get("127.0.0.1", 1, "/a b\r\nX: y", 1.0)


# -- deadlines against a server that sends one header byte per second -----------


def test_http_get_returns_by_its_deadline(slow: SlowServer) -> None:
    started = time.monotonic()
    with pytest.raises(ProbeError, match="no complete answer within 2s"):
        http_get(slow.host, slow.port, "/healthz", 2.0)
    assert time.monotonic() - started < 2.0 + SLACK


def test_the_smoke_http_check_returns_by_its_deadline(slow: SlowServer) -> None:
    check = HttpCheck(path="/healthz")
    problem, took = _timed(lambda: http_check(slow.host, slow.port, check, 2.0))
    assert took < 2.0 + SLACK
    assert "GET /healthz: no answer" in str(problem) and "within 2s" in str(problem)


def test_the_aws_probe_returns_by_its_deadline(slow: SlowServer, listener: int) -> None:
    readiness, took = _timed(lambda: tcp_http_probe(
        _node(slow.host), http_port=slow.port, ssh_port=listener, timeout=2.0))
    assert took < 2.0 + SLACK
    assert not readiness.ready and readiness.ssh and not readiness.http
    assert "within 2s" in readiness.detail


def test_the_aws_probe_reports_ready_on_any_answer(server: int, listener: int) -> None:
    readiness = tcp_http_probe(_node(), http_port=server, path="/down", ssh_port=listener)
    assert readiness.ready and readiness.http
    assert "HTTP 503" in readiness.detail


def test_the_aws_builder_probe_is_bounded() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never routed, so the connect hangs until the deadline.
    readiness, took = _timed(lambda: ssh_port_probe(_node("192.0.2.1")))
    assert took < 3.0 + SLACK
    assert not readiness.ready
