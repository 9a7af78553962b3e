"""The replay driver over real HTTP: two local servers stand in for the old
and the new node (127.0.0.1 and 127.0.0.2, one port), the new one broken on
/catalog. What reaches them, and the verdict."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rollout.config_shadow import ShadowSettings
from rollout.core.analysis import VerdictKind
from rollout.core.shadow import Request, ShadowTarget
from rollout.drivers.shadow import ShadowReplay


class _Recorded:
    def __init__(self, recorded: list[Request]) -> None:
        self.recorded = recorded

    def open(self) -> None: ...

    def close(self) -> None: ...

    def recent(self) -> tuple[Request, ...]:
        return tuple(self.recorded)


def _server(address: str, port: int, broken: set[str],
            seen: list[tuple[str, str, dict[str, str]]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append((self.command, self.path, dict(self.headers.items())))
            status = 404 if self.path.split("?")[0] in broken else 200
            body = b"catalog\n"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = _answer

        def log_message(self, *args: object) -> None: ...

    return ThreadingHTTPServer((address, port), Handler)


@pytest.fixture
def nodes() -> Iterator[tuple[int, list[tuple[str, str, dict[str, str]]],
                              list[tuple[str, str, dict[str, str]]]]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    old_seen: list[tuple[str, str, dict[str, str]]] = []
    new_seen: list[tuple[str, str, dict[str, str]]] = []
    servers = [_server("127.0.0.1", port, set(), old_seen),
               _server("127.0.0.2", port, {"/catalog"}, new_seen)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    yield port, old_seen, new_seen
    for s in servers:
        s.shutdown()
        s.server_close()


TRAFFIC = [Request("GET", "/", (("Host", "web.lab"), ("Cookie", "s=1"))),
           Request("POST", "/buy"), Request("GET", "/catalog?page=2"),
           Request("HEAD", "/", (("Authorization", "Bearer t"),))]


def test_replay_finds_the_broken_path_and_sends_no_credentials(
        nodes: tuple[int, list[tuple[str, str, dict[str, str]]],
                     list[tuple[str, str, dict[str, str]]]]) -> None:
    port, old_seen, new_seen = nodes
    settings = ShadowSettings(enabled=True, min_requests=2)
    gate = ShadowReplay(settings, _Recorded(TRAFFIC))
    verdict = gate.replay(ShadowTarget("web-new", "127.0.0.2", "web-old", "127.0.0.1", port))
    assert verdict.kind is VerdictKind.FAILED and verdict.replayed == 3
    assert [m.text().split(":")[0] for m in verdict.mismatches] == ["GET /catalog?page=2"]
    assert verdict.mismatches[0].new.startswith("404 in ")
    for seen in (old_seen, new_seen):
        assert sorted((m, p) for m, p, _ in seen) == [
            ("GET", "/"), ("GET", "/catalog?page=2"), ("HEAD", "/")]
        for _, _, headers in seen:
            assert "Cookie" not in headers and "Authorization" not in headers
            assert headers["X-Rollout-Shadow"] == "1"
    root = next(h for m, p, h in new_seen if (m, p) == ("GET", "/"))
    assert root["Host"] == "web.lab"


def test_a_node_that_does_not_answer_is_a_mismatch(
        nodes: tuple[int, list[tuple[str, str, dict[str, str]]],
                     list[tuple[str, str, dict[str, str]]]]) -> None:
    port, _, _ = nodes
    settings = ShadowSettings(enabled=True, min_requests=1, timeout=1)
    gate = ShadowReplay(settings, _Recorded([Request("GET", "/")]))
    verdict = gate.replay(ShadowTarget("web-new", "127.0.0.3", "web-old", "127.0.0.1", port))
    assert verdict.kind is VerdictKind.FAILED
    assert "no answer" in verdict.mismatches[0].new
