"""The analysis providers against a real local HTTP server (Prometheus' and a
JSON endpoint's answers), and the haproxy provider on the fake LB."""

from __future__ import annotations

import http.server
import json
from typing import Any, ClassVar

import pytest
from pydantic import TypeAdapter

from rollout.config_analysis import Analysis
from rollout.core.analysis import AnalysisContext, VerdictKind
from rollout.drivers.analysis import Analyses, expand
from rollout.errors import ConfigError
from rollout.testing import FakeClock, FakeWorld
from tests.loopback import serve

ADAPTER: TypeAdapter[Analysis] = TypeAdapter(Analysis)
CTX = AnalysisContext("lab", "web", "r1", "web", ("10.0.0.9:80",), ("node5",),
                      ("10.0.0.1:80",), ("node1",))


class Answers(http.server.BaseHTTPRequestHandler):
    """Answers GETs with the next JSON body of ``bodies``; records the queries."""

    bodies: ClassVar[list[Any]] = []
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        body = json.dumps(self.bodies.pop(0) if len(self.bodies) > 1 else self.bodies[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


def vector(value: str) -> dict[str, Any]:
    return {"status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, value]}]}}


def analyses(defs: dict[str, dict[str, Any]], address: str | None = None,
             world: FakeWorld | None = None) -> Analyses:
    world = world or FakeWorld.create(2)
    return Analyses({k: ADAPTER.validate_python(v) for k, v in defs.items()}, world.lb,
                    FakeClock(), prometheus=address)


PROM = {"provider": "prometheus", "success": "result < 0.05", "count": 3, "interval": "1s",
        "query": 'sum(rate(x{proxy="$backend",server=~"$canary"}[30s]))'}


def test_prometheus_passes_and_sends_the_expanded_query() -> None:
    Answers.bodies, Answers.seen = [vector("0.01")], []
    with serve(Answers) as port:
        verdict = analyses({"e": PROM}, f"http://127.0.0.1:{port}").analyze("e", CTX)
    assert verdict.kind is VerdictKind.PASSED and len(verdict.measurements) == 3
    assert all(m.result == 0.01 for m in verdict.measurements)
    assert "server%3D~%22node5%22" in Answers.seen[0] and "proxy%3D%22web%22" in Answers.seen[0]


def test_prometheus_fails_on_the_first_bad_value() -> None:
    Answers.bodies = [vector("0.01"), vector("0.2")]
    with serve(Answers) as port:
        verdict = analyses({"e": PROM}, f"http://127.0.0.1:{port}").analyze("e", CTX)
    assert verdict.kind is VerdictKind.FAILED
    assert [m.result for m in verdict.measurements] == [0.01, 0.2]


def test_prometheus_empty_nan_and_unreachable_are_inconclusive() -> None:
    empty = {"status": "success", "data": {"resultType": "vector", "result": []}}
    for body in (empty, vector("NaN")):
        Answers.bodies = [body]
        with serve(Answers) as port:
            verdict = analyses({"e": PROM}, f"http://127.0.0.1:{port}").analyze("e", CTX)
        assert verdict.kind is VerdictKind.INCONCLUSIVE
    with serve(Answers) as port:
        pass  # the port is closed now
    verdict = analyses({"e": PROM}, f"http://127.0.0.1:{port}").analyze("e", CTX)
    assert verdict.kind is VerdictKind.INCONCLUSIVE
    assert "prometheus" in verdict.measurements[0].detail


def test_http_reads_a_json_path() -> None:
    Answers.bodies = [{"stats": {"errors": [0.5, 0.001]}}]
    with serve(Answers) as port:
        spec = {"provider": "http", "url": f"http://127.0.0.1:{port}/m?r=$rollout",
                "path": "stats.errors.1", "success": "result < 0.01", "count": 2}
        verdict = analyses({"h": spec}).analyze("h", CTX)
    assert verdict.kind is VerdictKind.PASSED and Answers.seen[-1] == "/m?r=r1"


def test_http_missing_path_is_inconclusive() -> None:
    Answers.bodies = [{"other": 1}]
    with serve(Answers) as port:
        spec = {"provider": "http", "url": f"http://127.0.0.1:{port}/", "path": "rate",
                "success": "result < 0.01", "count": 1}
        verdict = analyses({"h": spec}).analyze("h", CTX)
    assert verdict.kind is VerdictKind.INCONCLUSIVE


def _haproxy_ctx(world: FakeWorld) -> AnalysisContext:
    members = [m for m in world.lb.members() if m.target]
    canary, rest = members[0], members[1:]
    return AnalysisContext("lab", "web", "r1", "web", (canary.target,), (canary.slot,),
                           tuple(m.target for m in rest), tuple(m.slot for m in rest))


HAP = {"provider": "haproxy", "success": "result <= baseline + 0.01", "count": 2,
       "interval": "5s", "min_requests": 20}


def test_haproxy_catches_a_canary_with_errors() -> None:
    world = FakeWorld.create(3)
    ctx = _haproxy_ctx(world)
    canary = next(n.name for n in world.provider.live() if n.lb_target == ctx.canary_targets[0])
    world.lb.set_error_rate(canary, 0.3)
    a = Analyses({"h": ADAPTER.validate_python(HAP)}, world.lb, world.clock)
    verdict = a.analyze("h", ctx)
    assert verdict.kind is VerdictKind.FAILED
    assert verdict.measurements[0].result == 0.3 and verdict.measurements[0].baseline == 0.0


def test_haproxy_without_traffic_is_inconclusive() -> None:
    world = FakeWorld.create(3)
    world.lb.rps = 0.0
    a = Analyses({"h": ADAPTER.validate_python(HAP)}, world.lb, world.clock)
    verdict = a.analyze("h", _haproxy_ctx(world))
    assert verdict.kind is VerdictKind.INCONCLUSIVE
    assert "fewer than min_requests 20" in verdict.reason


def test_unknown_placeholder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown placeholder"):
        expand("x{server=~\"$nodes\"}", CTX, "q")
