"""Lifecycle hooks on the FAKES: where each point falls for each strategy, a
failing or slow hook takes the restore path, a crash during a hook resumes to
a converged pool, and the hook settings are checked when the inventory loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollout.config import Pool
from rollout.core.state import Phase, RolloutStatus
from rollout.engine.controller import Controller
from rollout.errors import ConfigError, Interrupted, RolloutFailed
from rollout.hooks import HookPoint
from rollout.inventory import load_environment
from rollout.store.journal import Journal
from rollout.testing import FakeHookRunner, FakeWorld, pool_settings

ALL = {p.value: {"playbook": f"playbooks/hooks/{p.value}.yml", "timeout": 30} for p in HookPoint}
NEW_SIDE = ["after_boot", "before_traffic", "after_traffic"]
OLD_SIDE = ["before_drain", "before_destroy"]
IN_PLACE = {"strategy": "in_place", "max_unavailable": 1, "min_healthy": 1}


class Crash(BaseException):
    """Stands in for a SIGKILL: nothing in the controller catches it."""


class CrashingHooks(FakeHookRunner):
    """Dies during the ``at``-th hook run (its outcome is never journaled)."""

    def __init__(self, world: FakeWorld, at: int) -> None:
        super().__init__(world.clock)
        self.at = at

    def run(self, call: Any) -> None:
        super().run(call)
        if len(self.runs) == self.at:
            raise Crash(call.point.value)


def _controller(world: FakeWorld, path: Path, runner: FakeHookRunner,
                **settings: Any) -> Controller:
    settings.setdefault("hooks", ALL)
    pool = Pool("lab", "web", pool_settings(**settings), path.parent / "web.yml")
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(path, durable=False), clock=world.clock, workers=0,
                      hooks=runner)


def _node_steps(journal: Journal, rollout_id: str, node: str) -> list[str]:
    """The journaled steps about ``node``: a hook as its point, others as their kind."""
    return [s.detail if s.kind == "hook" else s.kind for s in journal.steps(rollout_id)
            if s.node == node]


@pytest.mark.parametrize("settings", [{"pool_size": 2}, {"pool_size": 2, **IN_PLACE},
                                      {"pool_size": 2, "standby": "stopped"}],
                         ids=["surge", "in_place", "surge-stopped-standby"])
def test_every_hook_runs_once_per_replacement_at_its_point(tmp_path: Path,
                                                           settings: Any) -> None:
    world = FakeWorld.create(2)
    olds = [n.name for n in world.provider.live()]
    hooks = FakeHookRunner(world.clock)
    ctl = _controller(world, tmp_path / "j.sqlite", hooks, **settings)
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(2, world.new.id) == []
    state = ctl.journal.get(result.id)
    assert hooks.points("controller") == ["before_rollout", "after_rollout"]
    assert hooks.runs[0][0] is HookPoint.BEFORE_ROLLOUT
    assert hooks.runs[-1][0] is HookPoint.AFTER_ROLLOUT
    for rep in state.replacements:
        assert hooks.points(rep.new_name) == NEW_SIDE
        assert hooks.points(rep.old_name) == OLD_SIDE
        new_steps = _node_steps(ctl.journal, result.id, rep.new_name)
        # after_boot before the smoke test; before_traffic before the LB add;
        # after_traffic once it serves (the old node drains afterwards).
        assert new_steps[new_steps.index("after_boot") + 1] == "smoke"
        assert new_steps.index("before_traffic") < new_steps.index("lb_add")
        assert new_steps[-1] == "after_traffic"
        old_steps = _node_steps(ctl.journal, result.id, rep.old_name)
        assert old_steps.index("before_drain") < old_steps.index("lb_set_admin")
        assert old_steps.index("before_destroy") < old_steps.index("destroy")
        if settings.get("strategy") == "in_place" or settings.get("standby") == "stopped":
            assert old_steps.index("before_destroy") < old_steps.index("stop")
    # Every hook call is told which nodes it is about.
    boot = next(c for c in hooks.calls if c.point is HookPoint.AFTER_BOOT)
    assert boot.node is not None and boot.new is not None and boot.node.name == boot.new.name
    assert boot.rollout_id == result.id and boot.image.id == world.new.id
    if settings.get("strategy") == "in_place":
        assert boot.old is None  # stopped already: nothing to reach
    else:
        assert boot.old is not None and boot.old.name in olds
    drain = next(c for c in hooks.calls if c.point is HookPoint.BEFORE_DRAIN)
    assert drain.node is not None and drain.old is not None and drain.node.name == drain.old.name


@pytest.mark.parametrize("point", [p for p in HookPoint if p is not HookPoint.AFTER_ROLLOUT])
@pytest.mark.parametrize("strategy", ["surge", "in_place"])
def test_a_failing_hook_restores_the_pool(tmp_path: Path, point: HookPoint,
                                          strategy: str) -> None:
    world = FakeWorld.create(2)
    hooks = FakeHookRunner(world.clock)
    hooks.fail(point)
    extra = IN_PLACE if strategy == "in_place" else {}
    ctl = _controller(world, tmp_path / "j.sqlite", hooks, pool_size=2, **extra)
    with pytest.raises(RolloutFailed) as failed:
        ctl.run(world.new)
    assert world.problems(2, world.old.id) == []
    state = ctl.journal.history("lab", "web", limit=1)[0].state
    assert state.status is RolloutStatus.FAILED
    assert point.value in failed.value.message or point.value in (state.failing or "")
    if not point.on_controller:
        failed_rep = next(r for r in state.replacements if r.failure is not None)
        assert failed_rep.failure.value == "hook" and failed_rep.phase is Phase.RESTORED
    else:
        assert all(r.phase is Phase.SKIPPED for r in state.replacements)
    assert ctl.journal.unfinished("lab", "web") is None


def test_a_hook_past_its_timeout_restores_the_pool(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    hooks = FakeHookRunner(world.clock)
    hooks.take(HookPoint.BEFORE_TRAFFIC, 45.0)  # its timeout is 30 s
    ctl = _controller(world, tmp_path / "j.sqlite", hooks, pool_size=2)
    with pytest.raises(RolloutFailed):
        ctl.run(world.new)
    assert world.problems(2, world.old.id) == []
    state = ctl.journal.history("lab", "web", limit=1)[0].state
    assert any("more than its timeout 30s" in (r.error or "") for r in state.replacements)


def test_a_failing_after_rollout_hook_leaves_the_pool_whole(tmp_path: Path) -> None:
    """Nothing to restore to: the pool stays on the new image, the rollout fails."""
    world = FakeWorld.create(2)
    hooks = FakeHookRunner(world.clock)
    hooks.fail(HookPoint.AFTER_ROLLOUT)
    ctl = _controller(world, tmp_path / "j.sqlite", hooks, pool_size=2)
    with pytest.raises(RolloutFailed) as failed:
        ctl.run(world.new)
    assert world.problems(2, world.new.id) == []
    assert "nothing was restored" in failed.value.message
    state = ctl.journal.history("lab", "web", limit=1)[0].state
    assert [r.phase for r in state.replacements] == [Phase.DONE, Phase.DONE]


def test_a_stop_before_after_rollout_interrupts_and_resume_runs_it(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    path = tmp_path / "j.sqlite"
    with pytest.raises(Crash):  # killed while after_rollout runs
        _controller(world, path, CrashingHooks(world, 12), pool_size=2).run(world.new)
    hooks = FakeHookRunner(world.clock)
    stopping = _controller(world, path, hooks, pool_size=2)
    stopping.stop_requested = lambda: True
    with pytest.raises(Interrupted):
        stopping.resume()
    assert hooks.runs == []
    state = stopping.journal.history("lab", "web", limit=1)[0].state
    assert state.status is RolloutStatus.INTERRUPTED
    assert _controller(world, path, hooks, pool_size=2).resume().status is (
        RolloutStatus.SUCCEEDED)
    assert hooks.points() == ["after_rollout"]
    assert world.problems(2, world.new.id) == []


def test_pool_without_hooks_runs_none(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    hooks = FakeHookRunner(world.clock)
    ctl = _controller(world, tmp_path / "j.sqlite", hooks, pool_size=2, hooks={})
    assert ctl.run(world.new).status is RolloutStatus.SUCCEEDED
    assert hooks.runs == []


def _hook_count(tmp_path: Path, **settings: Any) -> int:
    world = FakeWorld.create(2)
    hooks = FakeHookRunner(world.clock)
    _controller(world, tmp_path / "count.sqlite", hooks, pool_size=2, **settings).run(world.new)
    return len(hooks.runs)


@pytest.mark.parametrize("strategy", ["surge", "in_place"])
def test_a_crash_during_any_hook_then_resume_converges(tmp_path: Path, strategy: str) -> None:
    extra = IN_PLACE if strategy == "in_place" else {}
    total = _hook_count(tmp_path, **extra)
    assert total == 2 + 2 * 5
    for k in range(1, total + 1):
        world = FakeWorld.create(2)
        path = tmp_path / f"crash-{strategy}-{k}.sqlite"
        crashing = CrashingHooks(world, k)
        with pytest.raises(Crash):
            _controller(world, path, crashing, pool_size=2, **extra).run(world.new)
        killed_at = crashing.runs[-1]
        hooks = FakeHookRunner(world.clock)
        resumed = _controller(world, path, hooks, pool_size=2, **extra)
        assert resumed.resume().status is RolloutStatus.SUCCEEDED, f"crash in hook {k}"
        assert world.problems(2, world.new.id) == [], f"crash in hook {k}"
        # The hook whose outcome was never journaled runs again, about the same node.
        assert killed_at[:2] in [(p, n) for p, n, _ok in hooks.runs], f"crash in hook {k}"
        steps = resumed.journal.steps(resumed.journal.history("lab", "web", limit=1)[0].state.id)
        hook_steps = [s for s in steps if s.kind == "hook"]
        assert any(s.ok is None for s in hook_steps), "the killed hook's step stays open"
        assert all(s.ok for s in hook_steps if s.ok is not None)
        assert resumed.journal.unfinished("lab", "web") is None


# --- the settings ------------------------------------------------------------------


def _project(tmp_path: Path, hooks: str, files: tuple[str, ...] = ()) -> Path:
    inv = tmp_path / "inventories" / "lab"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  children:\n    web: {}\n")
    (inv / "group_vars" / "web.yml").write_text(
        "rollout:\n  pool_size: 2\n  haproxy: {backend: web, frontend_port: 8080}\n"
        f"  hooks:\n{hooks}")
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("- hosts: new\n  tasks: []\n")
    return tmp_path


def test_hooks_load_with_their_timeouts_and_vars(tmp_path: Path) -> None:
    project = _project(tmp_path, "    after_boot: {playbook: playbooks/hooks/a.yml, "
                                 "timeout: 2m, vars: {state_dir: /srv}}\n",
                       ("playbooks/hooks/a.yml",))
    pool = load_environment(project, "lab").pool("web")
    hook = pool.settings.hooks.at(HookPoint.AFTER_BOOT)
    assert hook is not None and hook.timeout == 120 and hook.vars == {"state_dir": "/srv"}
    assert pool.settings.hooks.at(HookPoint.BEFORE_DRAIN) is None


@pytest.mark.parametrize(("text", "files", "says"), [
    ("    after_boot: {playbook: playbooks/hooks/missing.yml}\n", (),
     "hooks.after_boot.playbook"),
    ("    before_drain: {playbook: /etc/passwd.yml}\n", (), "hooks.before_drain.playbook"),
    ("    before_drain: {playbook: ../outside.yml}\n", (), "hooks.before_drain.playbook"),
    ("    after_boot: {playbook: playbooks/hooks/a.yml, timeout: 0}\n",
     ("playbooks/hooks/a.yml",), "hooks.after_boot.timeout"),
    ("    after_boot: {playbook: playbooks/hooks/a.yml, vars: {rollout_node: x}}\n",
     ("playbooks/hooks/a.yml",), "hooks.after_boot.vars"),
    ("    on_boot: {playbook: playbooks/hooks/a.yml}\n", ("playbooks/hooks/a.yml",),
     "hooks.on_boot"),
])
def test_bad_hook_settings_name_the_file_and_key(tmp_path: Path, text: str,
                                                 files: tuple[str, ...], says: str) -> None:
    project = _project(tmp_path, text, files)
    with pytest.raises(ConfigError) as bad:
        load_environment(project, "lab")
    assert "group_vars/web.yml" in bad.value.message and says in bad.value.message
    assert bad.value.exit_code == 2


def test_a_playbook_symlinked_out_of_the_project_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yml"
    outside.write_text("- hosts: all\n  tasks: []\n")
    project = _project(tmp_path / "p", "    after_boot: {playbook: playbooks/hooks/a.yml}\n")
    (project / "playbooks" / "hooks").mkdir(parents=True)
    (project / "playbooks" / "hooks" / "a.yml").symlink_to(outside)
    with pytest.raises(ConfigError, match="not a playbook file inside"):
        load_environment(project, "lab")


def test_no_hook_runner_fails_the_hook_not_the_controller(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    pool = Pool("lab", "web", pool_settings(pool_size=2, hooks={"after_boot": ALL["after_boot"]}),
                tmp_path / "web.yml")
    ctl = Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                     journal=Journal(tmp_path / "j.sqlite", durable=False), clock=world.clock,
                     workers=0)
    with pytest.raises(RolloutFailed):
        ctl.run(world.new)
    assert world.problems(2, world.old.id) == []
