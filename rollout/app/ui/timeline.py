"""Pure functions from the journal's records to what the charts draw.

- :func:`node_timeline`: per replacement, its steps as ``(kind, start, end,
  ok)`` bars, times relative to the rollout's start; an unfinished step runs
  to ``now``.
- :func:`capacity_series`: in-service capacity over time, *derived* from the
  ``phase_changed`` events (the journal keeps no LB samples): a new node
  counts from the phase after it rose (``draining`` on, for surge), an old
  node stops counting once it is parked or draining.

| phase                                    | old node in service | new node in service |
|------------------------------------------|---------------------|---------------------|
| pending, launching .. rising (surge)     | yes                 | no                  |
| parking, and launching .. rising in place| no                  | no                  |
| draining, standby, retiring, done        | no                  | yes                 |
| restoring, restored, skipped             | yes                 | no                  |
"""

from __future__ import annotations

from typing import Any

from rollout.config import Strategy
from rollout.core.state import Phase, RolloutState
from rollout.events import Event, PhaseChanged
from rollout.store.journal import Step

_NEW_IN = {Phase.DRAINING, Phase.STANDBY, Phase.RETIRING, Phase.DONE}
_OLD_OUT_ALWAYS = {Phase.PARKING, Phase.DRAINING, Phase.STANDBY, Phase.RETIRING, Phase.DONE}
_OLD_OUT_IN_PLACE = {Phase.LAUNCHING, Phase.BOOTING, Phase.SMOKING, Phase.ADDING, Phase.RISING,
                     Phase.RELAUNCHING}


def node_timeline(state: RolloutState, steps: list[Step], now: float) -> list[dict[str, Any]]:
    """One row per replacement: its nodes, phase and step bars."""
    start = state.started_at
    end_of_rollout = state.finished_at or now
    rows = []
    for rep in state.replacements:
        mine = [s for s in steps if s.index == rep.index]
        rows.append({
            "index": rep.index, "old": rep.old_name, "new": rep.new_name,
            "phase": rep.phase.value, "error": rep.error,
            "steps": [{
                "kind": s.kind, "node": s.node,
                "start": max(0.0, s.started_at - start),
                "end": max(0.0, (s.finished_at if s.finished_at is not None
                                 else end_of_rollout) - start),
                "ok": s.ok,
            } for s in mine],
        })
    return rows


def in_service(phase: Phase, strategy: Strategy) -> int:
    """How a replacement in ``phase`` changes capacity: -1, 0 or +1 (see the table)."""
    old_out = phase in _OLD_OUT_ALWAYS or (
        strategy is Strategy.IN_PLACE and phase in _OLD_OUT_IN_PLACE)
    return (1 if phase in _NEW_IN else 0) - (1 if old_out else 0)


def capacity_series(state: RolloutState, events: list[Event],
                    now: float) -> list[tuple[float, int]]:
    """``(seconds since start, nodes in service)`` at each phase change."""
    base = state.settings.pool_size
    phases: dict[int, Phase] = {}
    series = [(0.0, base)]
    for event in events:
        if not isinstance(event, PhaseChanged):
            continue
        try:
            phases[event.index] = Phase(event.phase)
        except ValueError:
            continue
        level = base + sum(in_service(p, state.strategy) for p in phases.values())
        series.append((max(0.0, event.at - state.started_at), level))
    series.append(((state.finished_at or now) - state.started_at, series[-1][1]))
    return series
