"""The post-rollout window on the fakes: analyses keep judging the new pool
after the last node was replaced; a failure fails the rollout, and through
the application layer (`rollout run`) rolls the pool back to the image it
replaced, recording the original rollout as rolled back."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from rollout.app.history import rollout_history
from rollout.app.rollouts import run_rollout
from rollout.app.workspace import PoolDrivers, Workspace
from rollout.config import Pool, PoolSettings
from rollout.core.rollback import rollback_target
from rollout.core.state import RolloutStatus
from rollout.drivers.analysis import Analyses
from rollout.engine.controller import Controller
from rollout.errors import Interrupted, RolloutFailed
from rollout.events import Event
from rollout.inventory import load_environment
from rollout.model import SshTarget
from rollout.paths import DataDir
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings

ANALYSES: dict[str, Any] = {
    "errors": {"provider": "haproxy", "success": "result < 0.05", "count": 2,
               "interval": "2s", "min_requests": 10},
}
WINDOW: dict[str, Any] = {"analysis": ["errors"], "window": "10s"}


def controller(world: FakeWorld, tmp_path: Path, events: list[Event],
               **post: Any) -> Controller:
    s = pool_settings(pool_size=2, analyses=ANALYSES, post_rollout={**WINDOW, **post})
    pool = Pool("lab", "web", s, tmp_path / "web.yml")
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(tmp_path / "journal.sqlite", durable=False),
                      clock=world.clock, on_event=events.append, workers=0,
                      analyzer=Analyses(s.analyses, world.lb, world.clock))


def _kinds(events: list[Event], kind: str) -> list[Any]:
    return [e for e in events if e.kind == kind]


def test_a_healthy_pool_passes_its_window_then_the_rollout_succeeds(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    events: list[Event] = []
    result = controller(world, tmp_path, events).run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(2, world.new.id) == []
    verdicts = [v.verdict for v in _kinds(events, "analysis_verdict")]
    # Rounds of 2 measurements 2 s apart until the 10 s window is over.
    assert len(verdicts) >= 3 and set(verdicts) == {"passed"}
    done = max(e.at for e in _kinds(events, "replacement_done"))
    finished = _kinds(events, "rollout_finished")[0]
    assert finished.at - done >= 10


def test_a_failing_window_fails_the_rollout_and_names_the_image_to_go_back_to(
        tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    world.lb.set_error_rate(world.new.id, 0.2)
    events: list[Event] = []
    ctl = controller(world, tmp_path, events)
    with pytest.raises(RolloutFailed, match="post-rollout analysis: analysis errors"):
        ctl.run(world.new)
    state = ctl.journal.history()[0].state
    assert state.status is RolloutStatus.FAILED
    assert state.window.failed and state.window.rollback_to == world.old.id
    assert _kinds(events, "analysis_measured")[-1].outcome == "failed"
    # The core does not roll back by itself; `rollout rollback` would go here:
    target = rollback_target([state])
    assert target is not None and target.image_id == world.old.id


def test_a_kill_during_the_window_resumes_the_window(tmp_path: Path) -> None:
    world = FakeWorld.create(2)

    class Crash(BaseException):
        pass

    def kill_on_first_verdict(event: Event) -> None:
        if event.kind == "analysis_verdict":
            raise Crash()

    ctl = controller(world, tmp_path, [])
    ctl.on_event = kill_on_first_verdict
    with pytest.raises(Crash):
        ctl.run(world.new)
    assert ctl.journal.history()[0].state.status is RolloutStatus.RUNNING
    world.lb.set_error_rate(world.new.id, 0.2)  # it goes bad while nobody watches
    resumed = controller(world, tmp_path, [])
    with pytest.raises(RolloutFailed, match="post-rollout analysis"):
        resumed.resume()


def test_a_signal_in_the_window_interrupts_and_resume_finishes_it(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    events: list[Event] = []
    ctl = controller(world, tmp_path, events)
    ctl.stop_requested = lambda: bool(_kinds(events, "analysis_verdict"))
    with pytest.raises(Interrupted):
        ctl.run(world.new)
    state = ctl.journal.history()[0].state
    assert state.status is RolloutStatus.INTERRUPTED and not state.window.done
    assert controller(world, tmp_path, []).resume().status is RolloutStatus.SUCCEEDED
    assert ctl.journal.history()[0].state.window.done


# --- the application layer: `rollout run` on the lab inventory, fakes for drivers ---

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FakeWorkspace(Workspace):
    """The repo's lab inventory; the web pool with ``settings`` and fakes."""

    fake: FakeWorld | None = None
    settings: PoolSettings | None = None

    def pool(self, role: str) -> Pool:
        pool = super().pool(role)
        return replace(pool, settings=self.settings) if self.settings is not None else pool

    def drivers(self, role: str) -> PoolDrivers:
        assert self.fake is not None
        f, pool = self.fake, self.pool(role)
        return PoolDrivers(pool, f.provider, f.lb, f.smoke, f.images,
                           analyzer=Analyses(pool.settings.analyses, f.lb, f.clock))


def _workspace(tmp_path: Path, fake: FakeWorld, **post: Any) -> FakeWorkspace:
    fake.provider.ssh = lambda node: SshTarget(  # type: ignore[method-assign]
        host="127.0.0.1", port=1, host_key_policy="ignore")
    env = load_environment(REPO, "lab")
    settings = env.pool("web").settings.model_copy(update={
        "pool_size": 4, "canary": 0, "soak": 0.0, "analyses": pool_settings(
            analyses=ANALYSES).analyses,
        "post_rollout": pool_settings(analyses=ANALYSES,
                                      post_rollout={**WINDOW, **post}).post_rollout})
    return FakeWorkspace(REPO, env, DataDir(tmp_path / "d"), fake=fake, settings=settings)


def test_run_rolls_back_to_the_previous_image_when_the_window_fails(tmp_path: Path) -> None:
    fake = FakeWorld.create(4)
    fake.lb.set_error_rate(fake.new.id, 0.2)
    ws = _workspace(tmp_path, fake)
    events: list[Event] = []
    with pytest.raises(RolloutFailed, match="rolled back to") as failed:
        run_rollout(ws, "web", image_id=fake.new.id, clock=fake.clock, on_event=events.append)
    assert failed.value.exit_code == 1
    assert fake.problems(4, fake.old.id) == []  # back on the previous image
    history = rollout_history(ws, "web")
    rollback, original = history[0], history[1]
    assert original["status"] == "failed" and rollback["status"] == "succeeded"
    assert rollback["id"] in original["message"] and fake.old.id in original["message"]
    rolled = _kinds(events, "rolled_back")
    assert rolled and rolled[0].by == rollback["id"] and rolled[0].image == fake.old.id


def test_rollback_false_only_fails_the_rollout(tmp_path: Path) -> None:
    fake = FakeWorld.create(4)
    fake.lb.set_error_rate(fake.new.id, 0.2)
    ws = _workspace(tmp_path, fake, rollback=False)
    with pytest.raises(RolloutFailed, match="post-rollout analysis") as failed:
        run_rollout(ws, "web", image_id=fake.new.id, clock=fake.clock)
    assert "rolled back to" not in str(failed.value)
    assert fake.problems(4, fake.new.id) == []
    assert len(rollout_history(ws, "web")) == 1
