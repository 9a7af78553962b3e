"""Analyses around a blue-green switch (``rollout.blue_green``), pure.

    when              the analyses judge                    a failure (or inconclusive: fail)
    ----------------  ------------------------------------  ---------------------------------
    pre_switch        the staged green pool (UP, drained:    side stays blue; green removed;
                      health checks only, no user traffic)   the rollout fails
    post_switch       green serving, blue warm (blue does    side := blue (journaled), one
                      not retire until they all passed)      switch back to the warm blue
                                                             pool, green removed; fails

Each runs as one :class:`~rollout.core.state.RunAnalysis` on the first
replacement, in the order given; the names that passed are journaled in
:class:`~rollout.core.bluegreen_state.BlueGreen`, so a resume re-runs only an
analysis whose verdict was not journaled. A failure only sets the rollout
failing and restores its replacements: :mod:`rollout.core.bluegreen` then
journals the side (blue) before the switch back, as for `rollout rollback`.
An inconclusive verdict with ``inconclusive: pause`` holds the rollout (blue
stays warm) until `rollout continue`, which runs that analysis again.
"""

from __future__ import annotations

from dataclasses import replace

from rollout.core import gate
from rollout.core.analysis import AnalysisContext, AnalysisPoint
from rollout.core.bluegreen_state import BlueGreen
from rollout.core.decision import Pass
from rollout.core.state import Outcome, Phase, RestoreReason, RunAnalysis

__all__ = ["after_switch", "before_switch", "concluded", "post_switch_pending",
           "pre_switch_pending"]


def _pending(names: tuple[str, ...], passed: tuple[str, ...]) -> str | None:
    return next((n for n in names if n not in passed), None)


def before_switch(run: Pass, bg: BlueGreen) -> bool:
    """True once every pre-switch analysis passed; otherwise asks for the next
    one (the whole green pool is staged and UP) and holds every replacement."""
    name = _pending(run.settings.blue_green.pre_switch_analysis, bg.pre_passed)
    if name is None:
        return True
    _request(run, name, AnalysisPoint.PRE_SWITCH)
    return False


def pre_switch_pending(run: Pass) -> str | None:
    """The pre-switch analysis still to pass (the switch waits for it)."""
    bg = run.bg
    if bg is None or bg.switched_at is not None:
        return None
    return _pending(run.settings.blue_green.pre_switch_analysis, bg.pre_passed)


def post_switch_pending(run: Pass) -> str | None:
    """The post-switch analysis still to pass (blue stays warm meanwhile)."""
    bg = run.bg
    if bg is None or bg.switched_at is None:
        return None
    return _pending(run.settings.blue_green.post_switch_analysis, bg.post_passed)


def after_switch(run: Pass) -> None:
    """Once the LB is all green, ask for the next post-switch analysis."""
    name = post_switch_pending(run)
    if name is None or run.failing or not all(r.phase is Phase.WARM for r in run.reps):
        return
    _request(run, name, AnalysisPoint.POST_SWITCH)


def concluded(run: Pass, action: RunAnalysis, outcome: Outcome) -> bool:
    """Fold the verdict of an analysis around the switch; False when it is late."""
    bg = run.bg
    if bg is None or run.failing or run.state.aborting or run.state.stopping:
        return False
    pre = action.point is AnalysisPoint.PRE_SWITCH
    if pre != (bg.switched_at is None):
        return False  # a verdict about the other side of the switch
    names = run.settings.blue_green.pre_switch_analysis if pre else \
        run.settings.blue_green.post_switch_analysis
    if _pending(names, bg.pre_passed if pre else bg.post_passed) != action.name:
        return False
    when = "pre-switch" if pre else "post-switch"
    settled = gate.settle(run, action, outcome, f"{when} analysis {action.name}")
    if settled.passed:
        run.bg = replace(bg, pre_passed=(*bg.pre_passed, action.name)) if pre else \
            replace(bg, post_passed=(*bg.post_passed, action.name))
        return True
    if settled.held:
        return True
    why = settled.failure
    back = "green was removed, blue kept" if pre else \
        "switched back to the warm blue pool"
    run.failing = f"{when} analysis: {why}; {back}"
    for i in range(len(run.reps)):
        run.restore(i, RestoreReason.ROLLOUT_FAILED)
    return True


def _request(run: Pass, name: str, point: AnalysisPoint) -> None:
    """One RunAnalysis on the first replacement (the phase handlers say why
    the replacements wait, and still fail one whose green node dies)."""
    first = run.reps[0]
    if run.gate.paused or first.index in run.busy:
        return
    new = run.node(first.new_name)
    if new is None:
        return  # the phase handlers fail a replacement whose green node is gone
    run.actions.append(RunAnalysis(index=first.index, attempt=first.attempt, phase=first.phase,
                                   node=new, name=name, point=point, context=_context(run)))


def _context(run: Pass) -> AnalysisContext:
    """Green (the new nodes) is what is judged; blue (the old) is the baseline."""
    members = run.world.members
    green = tuple(r.new_target for r in run.reps if r.new_target)
    blue = tuple(r.old_target for r in run.reps if r.old_target)
    backend = run.settings.haproxy.backend if run.settings.haproxy is not None else run.state.role
    return AnalysisContext(
        env=run.state.env, role=run.state.role, rollout_id=run.state.id, backend=backend,
        canary_targets=green, canary_slots=tuple(members[t].slot for t in green if t in members),
        baseline_targets=blue, baseline_slots=tuple(members[t].slot for t in blue if t in members),
    )
