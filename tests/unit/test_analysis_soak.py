"""The canary soak judged by an analysis, end to end on the fakes: the
journal holds each measurement, a bad canary is restored, no traffic is
inconclusive and fails (never passes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollout.config import Pool
from rollout.core.state import Phase, RolloutStatus
from rollout.drivers.analysis import Analyses
from rollout.engine.controller import Controller
from rollout.errors import RolloutFailed
from rollout.store.journal import Journal
from rollout.store.requests import RequestKind
from rollout.testing import FakeWorld, pool_settings

ANALYSES = {"error-rate": {"provider": "haproxy", "success": "result <= baseline + 0.01",
                           "count": 2, "interval": "2s", "min_requests": 10}}


def controller(world: FakeWorld, tmp_path: Path, **settings: Any) -> Controller:
    s = pool_settings(analyses=ANALYSES, analysis="error-rate", canary=1, soak=1, **settings)
    pool = Pool("lab", "web", s, tmp_path / "web.yml")
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(tmp_path / "journal.sqlite", durable=False),
                      clock=world.clock, workers=0,
                      analyzer=Analyses(s.analyses, world.lb, world.clock))


def _events(ctl: Controller, kind: str) -> list[Any]:
    rollout_id = ctl.journal.history()[0].state.id
    return [e for e in ctl.journal.events(rollout_id) if e.kind == kind]


def test_a_healthy_canary_passes_its_analysis(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    ctl = controller(world, tmp_path)
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(4, world.new.id) == []
    measured = _events(ctl, "analysis_measured")
    assert [m.outcome for m in measured] == ["successful", "successful"]
    assert [v.verdict for v in _events(ctl, "analysis_verdict")] == ["passed"]


def test_a_bad_canary_is_caught_and_restored(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    world.lb.set_error_rate(world.new.id, 0.2)
    ctl = controller(world, tmp_path)
    with pytest.raises(RolloutFailed, match="canary analysis: analysis error-rate"):
        ctl.run(world.new)
    assert world.problems(4, world.old.id) == []
    measured = _events(ctl, "analysis_measured")
    assert measured[-1].outcome == "failed" and measured[-1].result == pytest.approx(0.2, 0.1)


def _with_inconclusive(world: FakeWorld, tmp_path: Path, on: str) -> Controller:
    global ANALYSES
    saved = ANALYSES
    ANALYSES = {"error-rate": {**saved["error-rate"], "inconclusive": on}}
    try:
        return controller(world, tmp_path)
    finally:
        ANALYSES = saved


def test_no_traffic_is_inconclusive_never_a_pass(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    world.lb.rps = 0.0
    ctl = _with_inconclusive(world, tmp_path, "fail")
    with pytest.raises(RolloutFailed, match="inconclusive"):
        ctl.run(world.new)
    assert world.problems(4, world.old.id) == []
    assert [v.verdict for v in _events(ctl, "analysis_verdict")] == ["inconclusive"]


def test_an_inconclusive_soak_with_pause_holds_until_continue(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    world.lb.rps = 0.0
    ctl = _with_inconclusive(world, tmp_path, "pause")
    held: list[Any] = []

    def look(event: Any) -> None:
        if event.kind == "rollout_paused" and not held:
            held.append(ctl.journal.get(event.rollout_id))
            world.lb.rps = 10.0  # traffic arrives; a person continues
            ctl.journal.request(event.rollout_id, RequestKind.CONTINUE, by="alice",
                                at=world.clock.now())

    ctl.on_event = look
    assert ctl.run(world.new).status is RolloutStatus.SUCCEEDED
    state = held[0]
    assert state.gate.paused and "inconclusive" in state.gate.held_by
    # Held with the canary still serving: nothing was restored, nothing retired.
    assert {r.phase for r in state.replacements if r.batch == 0} == {Phase.STANDBY}
    assert world.problems(4, world.new.id) == []
    assert [v.verdict for v in _events(ctl, "analysis_verdict")] == ["inconclusive", "passed"]
