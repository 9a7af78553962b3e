"""Weighted canary steps and pause gates on the fakes: what the LB's weights
are during and after the steps, and what the journal holds."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from rollout.app.gates import continue_rollout
from rollout.app.rollouts import run_rollout
from rollout.app.session import open_journal
from rollout.cli.live import LiveView
from rollout.config import Pool, PoolSettings
from rollout.config_canary import CanaryStep, shortcut
from rollout.core.canary import canary_weight
from rollout.core.state import Phase, RolloutStatus
from rollout.drivers.analysis import Analyses
from rollout.engine.controller import Controller
from rollout.errors import ConfigError, RolloutFailed
from rollout.events import Event, RolloutContinued, RolloutPaused
from rollout.store.journal import Journal
from rollout.store.requests import RequestKind
from rollout.testing import FakeWorld, pool_settings
from rollout.testing.fake_lb import NORMAL_WEIGHT
from tests.unit.test_live_frames import fake_ws, frame


class Crash(BaseException):
    """The controller dies (as under SIGKILL: nothing runs after it)."""


class HookedClock:
    """The world's clock, calling ``hook`` after every sleep of the controller."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.hook: Callable[[], None] = lambda: None

    def now(self) -> float:
        return self.world.clock.now()

    def sleep(self, seconds: float) -> None:
        self.world.clock.sleep(seconds)
        self.hook()


def controller(world: FakeWorld, tmp_path: Path, events: list[Event], clock: HookedClock,
               **settings: Any) -> Controller:
    settings = pool_settings(**settings)
    pool = Pool("lab", "web", settings, tmp_path / "web.yml")
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(tmp_path / "journal.sqlite", durable=False),
                      clock=clock, on_event=events.append, workers=0,
                      new_id=lambda: "rcanary01",
                      analyzer=Analyses(settings.analyses, world.lb, clock))


ANALYSES = {"error-rate": {"provider": "haproxy", "success": "result <= baseline + 0.01",
                           "count": 2, "interval": "2s", "min_requests": 10}}


def weights(world: FakeWorld) -> dict[str, int | None]:
    return {m.target: m.weight for m in world.lb.members() if m.target}


@pytest.mark.parametrize(("percent", "old", "canaries", "expected"), [
    (10, [100, 100, 100], 1, 33),  # 33 / 333 = 9.9 %
    (50, [100, 100, 100], 1, 256),  # 300 would be needed: capped at HAProxy's maximum
    (25, [100, 100, 100], 1, 100),
    (10, [100] * 8, 2, 44),  # two canaries share 10 %: 88 / 888
    (1, [100], 1, 1),
    (10, [], 1, 256),
])
def test_canary_weight(percent: float, old: list[int], canaries: int, expected: int) -> None:
    assert canary_weight(percent, old, canaries) == expected


@pytest.mark.parametrize(("raw", "kind", "text"), [
    ({"weight": 10}, "weight", "weight 10%"),
    ({"pause": "2m"}, "pause", "pause 120s"),
    ({"pause": {}}, "pause", "pause until continued"),
    ({"pause": None}, "pause", "pause until continued"),
    ({"analysis": "errors"}, "analysis", "analysis errors"),
])
def test_step_forms(raw: dict[str, object], kind: str, text: str) -> None:
    step = CanaryStep.model_validate(raw)
    assert (step.kind, step.describe()) == (kind, text)
    assert CanaryStep.model_validate(step.model_dump()) == step  # the journal's round trip


@pytest.mark.parametrize("raw", [{"weight": 10, "pause": "1m"}, {}, {"weight": 100},
                                 {"pause": {"for": 3}}, {"wait": 3}])
def test_bad_steps_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="canary_steps"):
        PoolSettings.model_validate({"canary_steps": [raw]})


def test_steps_need_a_canary_batch() -> None:
    with pytest.raises(ValueError, match="canary to 1 or more"):
        PoolSettings.model_validate({"canary": 0, "canary_steps": [{"pause": 1}]})


def test_weight_then_soak_and_weights_back_to_normal(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    clock, events = HookedClock(world), []
    seen: list[dict[str, int | None]] = []
    started = {"pause": False}

    def during_pause() -> None:
        if started["pause"]:
            seen.append(weights(world))

    clock.hook = during_pause
    ctl = controller(world, tmp_path, events, clock, canary_steps=[{"weight": 10},
                                                                   {"pause": 3}])
    ctl.on_event = lambda e: (events.append(e), started.update(  # type: ignore[func-returns-value]
        pause=started["pause"] or (e.kind == "canary_step" and "pause" in str(e.to_dict()))))
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(4, world.new.id) == []
    # During the pause one new node weighs 33 beside three old ones of 100 (9.9 %).
    target = next(r.new_target for r in ctl.journal.get(result.id).replacements
                  if r.batch == 0)
    during = [w for w in seen if target in w]
    assert during and all(w[target] == 33 for w in during[:5])
    assert all(w == NORMAL_WEIGHT for t, w in during[0].items() if t != target)
    # Afterwards every member has its normal weight, and the journal says so.
    assert set(weights(world).values()) == {NORMAL_WEIGHT}
    assert ctl.journal.get(result.id).gate.weighted == ()
    kinds = [s.kind for s in ctl.journal.steps(result.id)]
    assert kinds.count("lb_set_weight") == 2  # 33, then back to normal
    assert [e.kind for e in events].count("canary_step") == 2


def test_failed_canary_leaves_no_canary_weight(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    world.lb.set_error_rate(world.new.id, 0.5)
    clock, events = HookedClock(world), []
    ctl = controller(world, tmp_path, events, clock, canary_steps=[{"weight": 20},
                                                                   {"pause": 5}])
    with pytest.raises(RolloutFailed, match="canary"):
        ctl.run(world.new)
    assert world.problems(4, world.old.id) == []
    assert set(weights(world).values()) == {NORMAL_WEIGHT}


def _paused(ctl: Controller) -> bool:
    state = ctl.journal.get("rcanary01")
    return state.gate.paused


def test_pause_gate_holds_until_continue_and_survives_a_crash(tmp_path: Path) -> None:
    world = FakeWorld.create(3)
    clock, events = HookedClock(world), []
    settings = {"pool_size": 3, "canary_steps": [{"weight": 25}, {"pause": {}}],
                "progress_deadline": 60}
    ctl = controller(world, tmp_path, events, clock, **settings)
    polls = {"paused": 0}

    def crash_while_paused() -> None:
        if _paused(ctl):
            polls["paused"] += 1
            if polls["paused"] == 700:  # 70 virtual seconds: past the deadline
                raise Crash()

    clock.hook = crash_while_paused
    with pytest.raises(Crash):
        ctl.run(world.new)
    state = ctl.journal.get("rcanary01")
    assert state.status is RolloutStatus.RUNNING and state.gate.paused
    assert "rollout continue" in state.gate.held_by
    # Held: no later batch started, though the deadline (60 s) passed long ago.
    assert [r.phase for r in state.replacements if r.batch > 0] == [Phase.PENDING] * 2
    assert world.clock.now() - (state.gate.held_since or 0) > 60

    # A new controller resumes: still paused, until someone continues.
    events2: list[Event] = []
    ctl2 = controller(world, tmp_path, events2, clock, **settings)
    waited = {"polls": 0}

    def continue_later() -> None:
        if _paused(ctl2):
            waited["polls"] += 1
            if waited["polls"] == 700:  # 70 virtual seconds on, past the deadline
                ctl2.journal.request("rcanary01", RequestKind.CONTINUE, by="alice",
                                     at=clock.now())

    clock.hook = continue_later
    result = ctl2.resume()
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(3, world.new.id) == []
    assert set(weights(world).values()) == {NORMAL_WEIGHT}
    cont = next(e for e in events2 if e.kind == "rollout_continued")
    assert cont.to_dict()["by"] == "alice" and cont.to_dict()["waited"] > 70
    assert ctl2.journal.open_requests("rcanary01") == []


def test_rollout_pause_holds_at_the_next_batch(tmp_path: Path) -> None:
    world = FakeWorld.create(3)
    clock, events = HookedClock(world), []
    ctl = controller(world, tmp_path, events, clock, pool_size=3, canary=0,
                     progress_deadline=30)
    seen: dict[str, Any] = {"asked": False, "held_polls": 0}

    def operator() -> None:
        state = ctl.journal.get("rcanary01")
        if not seen["asked"]:
            ctl.journal.request("rcanary01", RequestKind.PAUSE, by="bob", at=clock.now())
            seen["asked"] = True
        elif state.gate.paused:
            seen["held_polls"] += 1
            seen["phases"] = [r.phase for r in state.replacements]
            if seen["held_polls"] == 500:
                ctl.journal.request("rcanary01", RequestKind.CONTINUE, by="bob",
                                    at=clock.now())

    clock.hook = operator
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    # While held, the first batch had finished and the second had not started.
    assert seen["phases"][0] is Phase.DONE and seen["phases"][-1] is Phase.PENDING
    assert [e.kind for e in events].count("rollout_paused") == 2  # asked, then held


def test_an_analysis_step_runs_the_named_analysis(tmp_path: Path) -> None:
    world = FakeWorld.create(3)
    clock, events = HookedClock(world), []
    ctl = controller(world, tmp_path, events, clock, pool_size=3, analyses=ANALYSES,
                     canary_steps=[{"weight": 30}, {"analysis": "error-rate"}])
    assert ctl.run(world.new).status is RolloutStatus.SUCCEEDED
    verdicts = [e for e in events if e.kind == "analysis_verdict"]
    assert [v.verdict for v in verdicts] == ["passed"]  # type: ignore[attr-defined]


def test_a_failing_analysis_step_restores_the_canary(tmp_path: Path) -> None:
    world = FakeWorld.create(3)
    world.lb.set_error_rate(world.new.id, 0.2)
    clock, events = HookedClock(world), []
    ctl = controller(world, tmp_path, events, clock, pool_size=3, analyses=ANALYSES,
                     canary_steps=[{"analysis": "error-rate"}])
    with pytest.raises(RolloutFailed, match="analysis error-rate failed"):
        ctl.run(world.new)
    assert world.problems(3, world.old.id) == []


def test_an_unknown_analysis_step_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="canary_steps: analysis 'errors' is not one of"):
        pool_settings(pool_size=3, canary_steps=[{"analysis": "errors"}])


def test_shortcut() -> None:
    assert shortcut(10, 30) == (CanaryStep(weight=10), CanaryStep(pause=30))


def test_the_live_view_shows_a_pause_and_how_long() -> None:
    now = {"t": 1000.0}
    view = LiveView(now=lambda: now["t"])
    view.feed(RolloutPaused("r1", 1000.0, reason="`rollout pause` by bob", held=False))
    assert "PAUSED" not in frame(view)  # asked, not held yet
    view.feed(RolloutPaused("r1", 1000.0, reason="canary step 2/2: waiting"))
    now["t"] = 1095.0
    assert "PAUSED for 1:35: canary step 2/2: waiting" in frame(view)
    view.feed(RolloutContinued("r1", 1095.0, by="bob", waited=95.0))
    assert "PAUSED" not in frame(view)


def test_canary_weight_shortcut_through_the_app(tmp_path: Path) -> None:
    fake, ws = fake_ws(tmp_path)
    result = run_rollout(ws, "web", version="2.0.0", clock=fake.clock,
                         overrides={"canary_weight": 10, "soak": "2s"})
    assert result.status is RolloutStatus.SUCCEEDED
    assert set(weights(fake).values()) == {NORMAL_WEIGHT}
    with closing(open_journal(ws)) as journal:
        state = journal.get(result.id)
        assert state.settings.canary_steps == shortcut(10, 2)
        kinds = [s.kind for s in journal.steps(result.id)]
    assert kinds.count("lb_set_weight") == 2
    with pytest.raises(ConfigError, match="nothing to continue"):
        continue_rollout(ws, rollout_id=result.id)


def test_reap_puts_back_a_canary_weight_a_crash_left(tmp_path: Path) -> None:
    world = FakeWorld.create(3)
    clock, events = HookedClock(world), []
    ctl = controller(world, tmp_path, events, clock, pool_size=3,
                     canary_steps=[{"weight": 25}, {"pause": {}}])

    def crash_when_paused() -> None:
        if _paused(ctl):
            raise Crash()

    clock.hook = crash_when_paused
    with pytest.raises(Crash):
        ctl.run(world.new)
    assert any(w != NORMAL_WEIGHT for w in weights(world).values())  # the canary's
    clock.hook = lambda: None
    ctl.abort()  # the canary leaves the LB, and its weight with it
    assert set(weights(world).values()) == {NORMAL_WEIGHT}
    # A weight left behind outside any rollout (a hand edit, a crash of an old
    # version): reap puts it back.
    node = world.provider.live()[0]
    world.lb.set_weight(node, 7)
    report = ctl.reap()
    assert report.reweighted == (node.lb_target,)
    assert set(weights(world).values()) == {NORMAL_WEIGHT}
