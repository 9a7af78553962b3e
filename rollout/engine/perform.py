"""One action of the core, performed through the drivers: the only place
that maps an action kind to a driver call."""

from __future__ import annotations

from rollout.core.state import (
    Action,
    AddMember,
    AttachVolume,
    DestroyNode,
    FinishRemoval,
    JoinGroup,
    Launch,
    Outcome,
    RemoveMember,
    RunAnalysis,
    RunSmoke,
    SetAdmin,
    SetWeight,
    StartNode,
    StopNode,
)
from rollout.engine.analysis import Judge, no_analysis
from rollout.errors import RolloutError
from rollout.protocols import Clock, LoadBalancer, Provider, SmokeRunner


def perform(action: Action, provider: Provider, lb: LoadBalancer, runner: SmokeRunner,
            clock: Clock, judge: Judge = no_analysis) -> Outcome:
    """One driver call. Any Exception is an outcome; BaseException is not."""
    started = clock.now()
    node = smoke = None
    try:
        if isinstance(action, Launch) and action.spec is not None:
            node = provider.launch(action.spec)
        elif isinstance(action, RunSmoke) and action.image is not None:
            smoke = runner.run(action.node, action.image)
        elif isinstance(action, AddMember):
            lb.add(action.node)
        elif isinstance(action, SetAdmin):
            lb.set_admin(action.node, action.admin)
        elif isinstance(action, RemoveMember):
            lb.remove(action.node)
        elif isinstance(action, StopNode):
            provider.stop(action.node)
        elif isinstance(action, StartNode):
            node = provider.start(action.node)
        elif isinstance(action, DestroyNode):
            provider.destroy(action.node)
        elif isinstance(action, FinishRemoval):
            provider.finish_removal(action.node)
        elif isinstance(action, AttachVolume):
            provider.attach_volume(action.node)
        elif isinstance(action, JoinGroup):
            provider.join_group(action.node)
        elif isinstance(action, SetWeight):
            lb.set_weight(action.node, action.weight)
        elif isinstance(action, RunAnalysis):
            verdict = judge(action.name)
            if not verdict.passed:
                return Outcome(False, clock.now() - started, error=verdict.reason)
        else:
            raise TypeError(f"unknown action {action!r}")
    except Exception as exc:
        error = str(exc) if isinstance(exc, RolloutError) else f"{type(exc).__name__}: {exc}"
        return Outcome(False, clock.now() - started, error=error)
    return Outcome(True, clock.now() - started, node=node, smoke=smoke)
