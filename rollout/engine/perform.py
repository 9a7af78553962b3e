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
    RunHook,
    RunShadow,
    RunSmoke,
    SetAdmin,
    SetWeight,
    StageMember,
    StartNode,
    StopNode,
    SwitchTraffic,
)
from rollout.errors import ConfigError, RolloutError
from rollout.hooks import HookCall
from rollout.protocols import (
    Analyzer,
    Clock,
    HookRunner,
    LoadBalancer,
    Provider,
    ShadowReplayer,
    SmokeRunner,
)


class NoHooks(HookRunner):
    """The hook runner of a controller given none: it refuses to run a hook."""

    def run(self, call: HookCall) -> None:
        raise ConfigError(f"{call.point.value} hook {call.hook.playbook}: this controller "
                          "has no hook runner")


def perform(action: Action, provider: Provider, lb: LoadBalancer, runner: SmokeRunner,
            clock: Clock, hooks: HookRunner | None = None,
            analyzer: Analyzer | None = None,
            shadow: ShadowReplayer | None = None) -> Outcome:
    """One driver call. Any Exception is an outcome; BaseException is not."""
    started = clock.now()
    node = smoke = verdict = replayed = None
    try:
        if isinstance(action, Launch) and action.spec is not None:
            node = provider.launch(action.spec)
        elif isinstance(action, RunSmoke) and action.image is not None:
            smoke = runner.run(action.node, action.image)
        elif isinstance(action, RunHook) and action.call is not None:
            (hooks or NoHooks()).run(action.call)
        elif isinstance(action, RunAnalysis) and action.context is not None:
            if analyzer is None:
                raise RolloutError(f"analysis {action.name}: this command runs no analyses")
            verdict = analyzer.analyze(action.name, action.context)
        elif isinstance(action, RunShadow) and action.target is not None:
            if shadow is None:
                raise RolloutError("shadow gate: this command records no requests")
            replayed = shadow.replay(action.target)
        elif isinstance(action, AddMember):
            lb.add(action.node)
        elif isinstance(action, SetAdmin):
            lb.set_admin(action.node, action.admin)
        elif isinstance(action, StageMember):
            lb.stage(action.node)
        elif isinstance(action, SwitchTraffic):
            lb.switch(action.ready, action.drain)
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
        else:
            raise TypeError(f"unknown action {action!r}")
    except Exception as exc:
        error = str(exc) if isinstance(exc, RolloutError) else f"{type(exc).__name__}: {exc}"
        return Outcome(False, clock.now() - started, error=error)
    return Outcome(True, clock.now() - started, node=node, smoke=smoke, verdict=verdict,
                   shadow=replayed)
