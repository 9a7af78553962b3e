"""The dark-launch gate in a replacement, on the FAKES: it runs after the
smoke test and before the new node joins the LB; a failing gate restores the
pool with the mismatches journaled; too little traffic is inconclusive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollout.backends import Site
from rollout.backends.aws.backend import AwsBackend
from rollout.backends.lab.backend import LabBackend
from rollout.config import Environment, EnvSettings, Pool
from rollout.core.shadow import Request
from rollout.core.state import Phase, RolloutStatus
from rollout.drivers.haproxy.requestlog import RequestLog
from rollout.engine.controller import Controller
from rollout.errors import ConfigError, RolloutFailed
from rollout.events import AnalysisMeasured, AnalysisVerdict, ReplacementFailed
from rollout.model import FailureKind
from rollout.paths import DataDir
from rollout.store.journal import Journal
from rollout.testing import FakeShadow, FakeWorld, pool_settings

TRAFFIC = [Request("GET", "/catalog"), Request("GET", "/"), Request("POST", "/buy"),
           Request("GET", "/a"), Request("GET", "/b"), Request("GET", "/c"),
           Request("GET", "/catalog", (("Cookie", "session=1"),))]
GATE = {"enabled": True, "min_requests": 5}


def _run(tmp_path: Path, broken: set[str], recorded: list[Request] | None = None,
         pool: dict[str, Any] | None = None,
         **shadow: Any) -> tuple[FakeWorld, Controller, FakeShadow]:
    world = FakeWorld.create(2)
    settings = pool_settings(pool_size=2, shadow={**GATE, **shadow}, **(pool or {}))
    gate = FakeShadow(world, settings.shadow, TRAFFIC if recorded is None else recorded,
                      broken=broken)
    ctl = Controller(pool=Pool("lab", "web", settings, tmp_path / "web.yml"),
                     provider=world.provider, lb=world.lb, smoke=world.smoke,
                     journal=Journal(tmp_path / "j.sqlite", durable=False), clock=world.clock,
                     workers=0, shadow=gate)
    return world, ctl, gate


def _latest(ctl: Controller) -> str:
    return ctl.journal.history("lab", "web", limit=1)[0].state.id


def test_a_passing_gate_runs_before_the_new_node_joins_the_lb(tmp_path: Path) -> None:
    world, ctl, gate = _run(tmp_path, broken=set())
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(2, world.new.id) == []
    assert len(gate.replays) == 2 and not any(in_lb for _, in_lb in gate.replays)
    olds = {t.old_node for t, _ in gate.replays}
    state = ctl.journal.get(result.id)
    assert olds <= {r.old_name for r in state.replacements}
    for rep in state.replacements:
        steps = [s.kind for s in ctl.journal.steps(result.id) if s.node == rep.new_name]
        assert steps.index("smoke") < steps.index("shadow") < steps.index("lb_add")
    verdicts = [e for e in ctl.journal.events(result.id) if isinstance(e, AnalysisVerdict)]
    assert [v.verdict for v in verdicts] == ["passed", "passed"]


def test_a_failing_gate_restores_the_pool_before_any_user_reaches_the_node(
        tmp_path: Path) -> None:
    world, ctl, gate = _run(tmp_path, broken={"/catalog"})
    olds = sorted(n.name for n in world.provider.live())
    with pytest.raises(RolloutFailed):
        ctl.run(world.new)
    assert world.problems(2, world.old.id) == []
    assert sorted(n.name for n in world.provider.live()) == olds
    assert len(gate.replays) == 1 and gate.replays[0][1] is False
    rid = _latest(ctl)
    state = ctl.journal.get(rid)
    failed = next(r for r in state.replacements if r.failure is not None)
    assert failed.failure is FailureKind.SHADOW and failed.phase is Phase.RESTORED
    new_steps = [s.kind for s in ctl.journal.steps(rid) if s.node == failed.new_name]
    assert "lb_add" not in new_steps and "shadow" in new_steps
    events = ctl.journal.events(rid)
    mismatches = [e.detail for e in events if isinstance(e, AnalysisMeasured)]
    assert mismatches == ["GET /catalog: old 200 in 10ms, new 404 in 10ms "
                          "(status 2xx became 4xx)"]
    verdict = next(e for e in events if isinstance(e, AnalysisVerdict))
    assert verdict.analysis == "shadow" and verdict.verdict == "failed"
    assert "1 of 5 replayed requests mismatched" in verdict.reason
    error = next(e.error for e in events if isinstance(e, ReplacementFailed))
    assert "never served" in error


def test_in_place_compares_with_another_old_node(tmp_path: Path) -> None:
    world, ctl, gate = _run(tmp_path, broken=set(), pool={
        "strategy": "in_place", "max_unavailable": 1, "min_healthy": 1})
    olds = {n.name for n in world.provider.live()}
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    state = ctl.journal.get(result.id)
    first, last = state.replacements
    # Its own old node is stopped before the launch: the other one answers;
    # for the last one, only the node that passed the gate before it is left.
    assert [t.old_node for t, _ in gate.replays] == [last.old_name, first.new_name]
    assert last.old_name in olds


def test_replacing_a_node_on_its_own_image_compares_with_it(tmp_path: Path) -> None:
    world, ctl, gate = _run(tmp_path, broken=set())
    node = sorted(n.name for n in world.provider.live())[0]
    result = ctl.run(world.old, only=[node], kind="replace")
    assert result.status is RolloutStatus.SUCCEEDED
    assert [t.old_node for t, _ in gate.replays] == [node]


def test_a_mismatch_share_under_the_threshold_passes(tmp_path: Path) -> None:
    world, ctl, _ = _run(tmp_path, broken={"/catalog"}, threshold=0.2)
    assert ctl.run(world.new).status is RolloutStatus.SUCCEEDED
    assert world.problems(2, world.new.id) == []


def test_no_traffic_is_inconclusive_and_refuses_the_node(tmp_path: Path) -> None:
    world, ctl, _ = _run(tmp_path, broken=set(), recorded=[Request("POST", "/buy")] * 20)
    with pytest.raises(RolloutFailed):
        ctl.run(world.new)
    assert world.problems(2, world.old.id) == []
    verdict = next(e for e in ctl.journal.events(_latest(ctl))
                   if isinstance(e, AnalysisVerdict))
    assert verdict.verdict == "inconclusive" and "0 replayable requests" in verdict.reason


def test_no_traffic_passes_through_when_configured(tmp_path: Path) -> None:
    world, ctl, _ = _run(tmp_path, broken={"/catalog"}, recorded=[], inconclusive="pass")
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    verdicts = [e for e in ctl.journal.events(result.id) if isinstance(e, AnalysisVerdict)]
    assert {v.verdict for v in verdicts} == {"inconclusive"}
    assert all("lets the node through" in v.reason for v in verdicts)


def test_a_pool_without_the_gate_replays_nothing(tmp_path: Path) -> None:
    world, ctl, gate = _run(tmp_path, broken={"/catalog"}, enabled=False)
    assert ctl.run(world.new).status is RolloutStatus.SUCCEEDED
    assert gate.replays == []


def _site(tmp_path: Path, pool: Pool) -> Site:
    env = Environment("lab", tmp_path, EnvSettings(), {pool.role: pool}, tmp_path / "hosts.yml")
    return Site(tmp_path, env, DataDir(tmp_path / "data"))


@pytest.mark.parametrize(("backend", "settings", "says"), [
    (AwsBackend, {"provider": "aws", "load_balancer": "elbv2", "haproxy": None,
                  "aws": {"region": "eu-west-1", "target_group_arn": "arn:aws:x"}},
     "not supported on aws"),
    (LabBackend, {"strategy": "blue_green"}, "blue_green"),
    (LabBackend, {"haproxy": {"backend": "web", "frontend_port": 8080,
                              "runtime": "tcp://127.0.0.1:9999"}}, "haproxy.runtime"),
])
def test_the_gate_is_refused_where_it_cannot_run(tmp_path: Path, backend: Any,
                                                 settings: dict[str, Any], says: str) -> None:
    pool = Pool("lab", "web", pool_settings(pool_size=2, shadow=GATE, **settings),
                tmp_path / "web.yml")
    with pytest.raises(ConfigError) as refused:
        backend(_site(tmp_path, pool)).validate(pool)
    assert "rollout.shadow" in refused.value.message and says in refused.value.message


def test_the_lab_records_a_gated_pools_requests_only(tmp_path: Path) -> None:
    gated = Pool("lab", "web", pool_settings(shadow=GATE), tmp_path / "web.yml")
    plain = Pool("lab", "web", pool_settings(), tmp_path / "web.yml")
    lab = LabBackend(_site(tmp_path, gated))
    source = lab.request_source(gated)
    assert isinstance(source, RequestLog)
    assert source.path == tmp_path / "data" / "lab" / "requests-web.sock"
    assert source.frontend == "fe_web"
    assert lab.request_source(plain) is None
