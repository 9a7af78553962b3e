"""Analyses around a blue-green switch, end to end on the fakes: a failing
pre-switch analysis keeps blue and removes green; a failing post-switch one
switches back to the warm blue pool; both are journaled; a kill between the
journaled failure and the switch back converges on resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollout.config import Pool
from rollout.core.analysis import AnalysisContext, Judgement, Measurement, Verdict, VerdictKind
from rollout.core.state import RolloutStatus
from rollout.drivers.analysis import Analyses
from rollout.engine.controller import Controller
from rollout.errors import RolloutFailed
from rollout.events import Event, SideChosen, StepStarted
from rollout.protocols import Analyzer
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings

# The haproxy provider on the fake LB: green's 5xx share while it serves.
ANALYSES: dict[str, Any] = {
    "errors": {"provider": "haproxy", "success": "result < 0.05", "count": 2,
               "interval": "2s", "min_requests": 10},
    "checks": {"provider": "haproxy", "success": "result < 0.05", "count": 1},
}


class Scripted:
    """An analyzer whose verdict per name is given (the pre-switch pool has no
    traffic in the fake LB, so the haproxy provider could only be inconclusive);
    it keeps the contexts it was asked about."""

    def __init__(self, kinds: dict[str, VerdictKind], inner: Analyzer | None = None) -> None:
        self.kinds = kinds
        self.inner = inner
        self.asked: list[tuple[str, AnalysisContext]] = []

    def analyze(self, name: str, context: AnalysisContext) -> Verdict:
        self.asked.append((name, context))
        if name not in self.kinds and self.inner is not None:
            return self.inner.analyze(name, context)
        kind = self.kinds[name]
        outcome = {VerdictKind.PASSED: Judgement.SUCCESSFUL,
                   VerdictKind.FAILED: Judgement.FAILED}.get(kind, Judgement.INCONCLUSIVE)
        m = Measurement(name, 0.0, outcome, 0.5 if outcome is Judgement.FAILED else None)
        reason = "" if kind is VerdictKind.PASSED else f"analysis {name}: {kind.value}"
        spec = pool_settings(analyses=ANALYSES).analyses.get(name)
        on = spec.inconclusive if spec is not None else Verdict(name, kind, ()).on_inconclusive
        return Verdict(name, kind, (m,), reason, on)


def controller(world: FakeWorld, tmp_path: Path, events: list[Event],
               analyzer: Analyzer | None = None, **blue_green: Any) -> Controller:
    s = pool_settings(pool_size=2, strategy="blue_green", scale_down_delay=1,
                      analyses=ANALYSES, blue_green=blue_green)
    pool = Pool("lab", "web", s, tmp_path / "web.yml")
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(tmp_path / "journal.sqlite", durable=False),
                      clock=world.clock, on_event=events.append, workers=0,
                      analyzer=analyzer or Analyses(s.analyses, world.lb, world.clock))


def _switches(events: list[Event]) -> int:
    return sum(1 for e in events if isinstance(e, StepStarted) and e.step == "lb_switch")


def _journal(ctl: Controller, kind: str) -> list[Any]:
    rollout_id = ctl.journal.history()[0].state.id
    return [e for e in ctl.journal.events(rollout_id) if e.kind == kind]


def test_a_passing_pre_switch_analysis_judges_green_then_the_switch_goes_ahead(
        tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    events: list[Event] = []
    analyzer = Scripted({"checks": VerdictKind.PASSED})
    ctl = controller(world, tmp_path, events, analyzer, pre_switch_analysis=["checks"])
    assert ctl.run(world.new).status is RolloutStatus.SUCCEEDED
    assert world.problems(2, world.new.id) == []
    (name, ctx), = analyzer.asked
    greens = {n.lb_target for n in world.provider.live()}
    assert name == "checks" and set(ctx.canary_targets) == greens
    assert [v.verdict for v in _journal(ctl, "analysis_verdict")] == ["passed"]


def test_a_failing_pre_switch_analysis_keeps_blue_and_removes_green(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    events: list[Event] = []
    ctl = controller(world, tmp_path, events, Scripted({"checks": VerdictKind.FAILED}),
                     pre_switch_analysis=["checks"])
    with pytest.raises(RolloutFailed, match="pre-switch analysis: analysis checks"):
        ctl.run(world.new)
    assert world.problems(2, world.old.id) == []  # all blue, green gone
    assert _switches(events) == 0
    assert [m.outcome for m in _journal(ctl, "analysis_measured")] == ["failed"]


def test_a_failing_post_switch_analysis_switches_back_to_the_warm_blue_pool(
        tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    world.lb.set_error_rate(world.new.id, 0.2)
    events: list[Event] = []
    ctl = controller(world, tmp_path, events, post_switch_analysis=["errors"])
    with pytest.raises(RolloutFailed, match="post-switch analysis: analysis errors"):
        ctl.run(world.new)
    assert world.problems(2, world.old.id) == []
    assert _switches(events) == 2  # to green, then back to blue in one call
    assert [e.side for e in events if isinstance(e, SideChosen)] == ["green", "blue"]
    last = _journal(ctl, "analysis_measured")[-1]
    assert last.outcome == "failed" and last.result == pytest.approx(0.2, abs=0.1)
    assert ctl.journal.history()[0].state.status is RolloutStatus.FAILED


def test_blue_stays_warm_until_the_post_switch_analysis_passed(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    events: list[Event] = []
    ctl = controller(world, tmp_path, events, post_switch_analysis=["errors"])
    assert ctl.run(world.new).status is RolloutStatus.SUCCEEDED
    assert world.problems(2, world.new.id) == []
    verdict = _journal(ctl, "analysis_verdict")[0]
    retired = [e for e in events if e.kind == "phase_changed" and e.phase == "retiring"]
    # The analysis took 2 s, more than scale_down_delay (1 s): blue waited for it.
    assert verdict.verdict == "passed" and retired and min(e.at for e in retired) >= verdict.at


class Crash(BaseException):
    pass


class DiesOnSwitchBack:
    """An LB whose second switch (back to blue) is never made: the controller
    dies after the failed verdict and the side were journaled."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def switch(self, ready: Any, drain: Any) -> None:
        self.calls += 1
        if self.calls > 1:
            raise Crash("killed before the switch back")
        self._inner.switch(ready, drain)


def test_a_kill_after_a_failed_post_switch_verdict_resumes_to_all_blue(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    world.lb.set_error_rate(world.new.id, 0.2)
    ctl = controller(world, tmp_path, [], post_switch_analysis=["errors"])
    ctl.lb = ctl.observer.lb = DiesOnSwitchBack(world.lb)  # type: ignore[assignment]
    with pytest.raises(Crash):
        ctl.run(world.new)
    said: list[Event] = []
    resumed = controller(world, tmp_path, said, post_switch_analysis=["errors"])
    with pytest.raises(RolloutFailed, match="post-switch analysis"):
        resumed.resume()
    assert world.problems(2, world.old.id) == []
    assert next(e.side for e in said if isinstance(e, SideChosen)) == "blue"


def test_inconclusive_pause_holds_before_the_switch(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    world.lb.rps = 0.0
    analyses = {"checks": {**ANALYSES["checks"], "inconclusive": "pause"}}
    s = pool_settings(pool_size=2, strategy="blue_green", analyses=analyses,
                      blue_green={"pre_switch_analysis": ["checks"]})
    ctl = Controller(pool=Pool("lab", "web", s, tmp_path / "web.yml"), provider=world.provider,
                     lb=world.lb, smoke=world.smoke,
                     journal=Journal(tmp_path / "journal.sqlite", durable=False),
                     clock=world.clock, workers=0,
                     analyzer=Analyses(s.analyses, world.lb, world.clock))
    paused: list[Event] = []
    ctl.on_event = paused.append
    ctl.stop_requested = lambda: any(e.kind == "rollout_paused" for e in paused)
    with pytest.raises(Exception):  # noqa: B017 - Interrupted by the stop
        ctl.run(world.new)
    assert any("pre-switch analysis checks was inconclusive" in e.reason  # type: ignore[attr-defined]
               for e in paused if e.kind == "rollout_paused")
    assert _switches(paused) == 0
    assert world.problems(2, world.old.id) == []


def test_the_config_refuses_an_unknown_switch_analysis() -> None:
    with pytest.raises(ValueError, match=r"blue_green: analysis 'nope'"):
        pool_settings(pool_size=2, strategy="blue_green", analyses=ANALYSES,
                      blue_green={"post_switch_analysis": ["nope"]})
