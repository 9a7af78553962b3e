"""The plan of a rollout, computed without changing anything: pure.

:func:`build_plan` takes the pool's nodes and LB members, the target image,
the settings and the journal's recent waits, and returns a :class:`PlanReport`
(``rollout plan`` shows it; ``rollout run`` refuses a plan that breaches the
floor). The application layer gathers those inputs with read-only calls.

The floor is the capacity the core itself keeps (:func:`rollout.core.batches.floor`).
A plan *breaches* the floor when a step would leave fewer in service, e.g. an
in-place batch when the pool is already short of a node, or any plan when the
pool is below its floor before it starts. The core would wait for capacity
that never comes, so ``rollout run`` refuses such a plan unless
``--allow-below-floor`` lowers the floor to the plan's lowest step
(:meth:`PlanReport.below_floor_overrides`).

A plan *exceeds the LB* when the load balancer cannot hold its peak
(:func:`lb_peak`: HAProxy's fixed slots, ELBv2's target quota): the surge's
first add would fail and the rollout restore. ``plan`` and ``run`` refuse it.

The ETA is a sum over the batches (nodes of one batch move in parallel) of
the median recorded wait of each kind (boot, smoke, lb_rise, drain) in this
pool, or :data:`DEFAULT_WAITS` when the journal has none, plus the canary soak.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rollout.config import PoolSettings, Strategy
from rollout.core.batches import CapacityStep, capacity_steps, floor, plan_batches, pool_nodes
from rollout.model import Image, LbCapacity, Member, Node

#: Seconds assumed per wait when the journal holds no sample of that kind
#: (lab figures rounded up: boot 2.3 s, smoke 4.5 s, lb_rise 3.1 s).
DEFAULT_WAITS: dict[str, float] = {"boot": 5.0, "smoke": 10.0, "lb_rise": 4.0, "drain": 1.0}
#: Stopping the old node of an in-place batch (not recorded as a wait).
STOP_SECONDS = 2.0
WAIT_KINDS = tuple(DEFAULT_WAITS)


@dataclass(frozen=True)
class Eta:
    seconds: float
    per_kind: dict[str, float]  # the per-batch figure used for each wait kind
    source: dict[str, str]  # kind -> "journal (N samples)" or "default"


@dataclass(frozen=True)
class PlanReport:
    """A rollout's plan. ``floor`` is the in-service count the core keeps."""

    env: str
    role: str
    target: Image
    strategy: Strategy
    replace: tuple[str, ...]  # in order
    skipped: tuple[str, ...]  # already on the target
    batches: tuple[tuple[str, ...], ...]
    canary: bool
    steps: tuple[CapacityStep, ...]
    pool_size: int
    in_service: int  # pool nodes in service now
    floor: int
    eta: Eta
    warnings: tuple[str, ...] = ()
    current_images: tuple[str, ...] = field(default=())
    lb_peak: int = 0  # LB members at the plan's busiest step
    lb_capacity: LbCapacity | None = None  # None: the LB has no practical bound

    @property
    def exceeds_lb(self) -> bool:
        """The LB cannot hold the plan's peak: the surge's first add would fail."""
        cap = self.lb_capacity
        return bool(self.replace) and cap is not None and self.lb_peak > cap.limit

    def lb_message(self) -> str:
        limit = self.lb_capacity.limit if self.lb_capacity is not None else 0
        return (f"the plan for {self.env}/{self.role} needs {self.lb_peak} load balancer "
                f"member(s) at its peak, but the backend holds {limit}")

    def lb_hint(self) -> str:
        cap = self.lb_capacity
        need = self.lb_peak
        what = cap.raise_with if cap is not None else "the LB's capacity"
        return (f"raise {what} to at least {need} (in the pool's group_vars), or use a "
                "smaller batch_size")

    @property
    def lowest(self) -> int:
        """The fewest nodes in service at any step (now, when nothing moves)."""
        return min([self.in_service, *(s.in_service for s in self.steps)])

    @property
    def breaches_floor(self) -> bool:
        return bool(self.replace) and self.lowest < self.floor

    def floor_message(self) -> str:
        return (f"the plan for {self.env}/{self.role} leaves {self.lowest} node(s) in service "
                f"at its lowest step, below the floor of {self.floor} (min_healthy / "
                f"pool_size - max_unavailable; {self.in_service} in service now)")

    def below_floor_overrides(self) -> dict[str, Any]:
        """Settings overrides that let the core go down to the plan's lowest step."""
        lowest = self.lowest
        return {"min_healthy": lowest, "max_unavailable": max(0, self.pool_size - lowest)}

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "plan", "env": self.env, "role": self.role,
            "target_image": self.target.id, "target_version": self.target.version,
            "strategy": self.strategy, "replace": list(self.replace),
            "skipped": list(self.skipped), "batches": [list(b) for b in self.batches],
            "canary": self.canary,
            "steps": [{"batch": s.batch, "step": s.step, "in_service": s.in_service,
                       "nodes": s.nodes, "floor": self.floor,
                       "below_floor": s.in_service < self.floor} for s in self.steps],
            "pool_size": self.pool_size, "in_service": self.in_service, "floor": self.floor,
            "lowest": self.lowest, "breaches_floor": self.breaches_floor,
            "eta_seconds": round(self.eta.seconds, 1), "eta_per_batch": self.eta.per_kind,
            "eta_source": self.eta.source, "warnings": list(self.warnings),
            "current_images": list(self.current_images),
            "lb_peak": self.lb_peak,
            "lb_capacity": self.lb_capacity.limit if self.lb_capacity is not None else None,
            "exceeds_lb": self.exceeds_lb,
        }


def estimate(batches: Sequence[Sequence[object]], settings: PoolSettings, canary: bool,
             samples: Mapping[str, Sequence[float]]) -> Eta:
    """The ETA of ``batches`` from recorded waits (median), else the defaults."""
    per_kind: dict[str, float] = {}
    source: dict[str, str] = {}
    for kind in WAIT_KINDS:
        found = [s for s in samples.get(kind, ()) if s >= 0]
        if found:
            per_kind[kind] = round(statistics.median(found), 2)
            source[kind] = f"journal ({len(found)} samples)"
        else:
            per_kind[kind] = DEFAULT_WAITS[kind]
            source[kind] = "default"
    per_batch = sum(per_kind.values())
    if settings.strategy is Strategy.IN_PLACE:
        per_batch += STOP_SECONDS
    total = per_batch * len(batches)
    if canary and batches and settings.soak > 0:
        total += settings.soak
    return Eta(total, per_kind, source)


def lb_peak(members: Sequence[Member], steps: Sequence[CapacityStep], in_service: int) -> int:
    """LB members at the plan's busiest step: the members there now, plus the
    machines a step has beyond the pool (a surge's new nodes join before the
    old ones leave)."""
    occupied = sum(1 for m in members if m.target)
    extra = max((s.nodes - in_service for s in steps), default=0)
    return occupied + max(0, extra)


def build_plan(*, env: str, role: str, target: Image, settings: PoolSettings,
               nodes: Sequence[Node], members: Sequence[Member],
               samples: Mapping[str, Sequence[float]],
               warnings: Sequence[str] = (),
               lb_capacity: LbCapacity | None = None) -> PlanReport:
    """The plan of a rollout of the pool to ``target``: pure, see the module doc.
    ``lb_capacity`` is the LB's (``LoadBalancer.capacity``): a plan whose peak
    exceeds it is marked :attr:`PlanReport.exceeds_lb`."""
    by_target = {m.target: m for m in members if m.target}
    pool = pool_nodes(nodes, by_target)
    plan = plan_batches(pool, target, settings)
    in_service = sum(1 for n in pool if by_target[n.lb_target].in_service)
    steps = capacity_steps(plan, settings, pool_size=in_service)
    notes = list(warnings)
    in_pool = {n.name for n in pool}
    outside = sorted(n.name for n in nodes if n.name not in in_pool)
    if outside:
        notes.append(f"not part of the pool now (stopped, parked or not in the LB), left "
                     f"alone: {', '.join(outside)}")
    if len(pool) != settings.pool_size:
        notes.append(f"the pool has {len(pool)} node(s), pool_size is {settings.pool_size}")
    report = PlanReport(
        env=env, role=role, target=target, strategy=settings.strategy,
        replace=tuple(n.name for n in plan.nodes), skipped=tuple(n.name for n in plan.skipped),
        batches=tuple(tuple(n.name for n in b) for b in plan.batches), canary=plan.canary,
        steps=tuple(steps), pool_size=settings.pool_size, in_service=in_service,
        floor=floor(settings), eta=estimate(plan.batches, settings, plan.canary, samples),
        current_images=tuple(sorted({n.image_id for n in pool})),
        warnings=tuple(notes),
        lb_peak=lb_peak(members, steps, in_service), lb_capacity=lb_capacity,
    )
    if report.breaches_floor:
        report = replace(report, warnings=(
            *report.warnings, f"{report.floor_message()}; `rollout run` refuses it without "
            "--allow-below-floor"))
    if report.exceeds_lb:
        report = replace(report, warnings=(
            *report.warnings, f"{report.lb_message()}; `rollout run` refuses it: "
            f"{report.lb_hint()}"))
    return report


__all__ = ["DEFAULT_WAITS", "STOP_SECONDS", "WAIT_KINDS", "Eta", "PlanReport", "build_plan",
           "estimate", "lb_peak"]
