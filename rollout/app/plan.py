"""``rollout plan``: what a rollout would do, computed without changing anything.

:func:`build_plan` is pure: the pool's nodes and LB members, the target image,
the settings and the journal's recent waits go in; a :class:`PlanReport`
comes out. :func:`plan_rollout` gathers those inputs through the drivers and
the journal with read-only calls only (``Provider.list``, ``LoadBalancer.members``).

The floor is the capacity the core itself keeps: ``max(min_healthy,
pool_size - max_unavailable)`` nodes in service. A plan *breaches* the floor
when a step would leave fewer in service, e.g. an in-place batch when the pool
is already short of a node, or any plan when the pool is below its floor
before it starts. The core would wait for capacity that never comes, so
``rollout run`` refuses such a plan unless ``--allow-below-floor`` lowers the
floor to the plan's lowest step (:meth:`PlanReport.below_floor_overrides`).

The ETA is a sum over the batches (nodes of one batch move in parallel) of
the median recorded wait of each kind (boot, smoke, lb_rise, drain) in this
pool, or :data:`DEFAULT_WAITS` when the journal has none, plus the canary soak.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rollout.config import PoolSettings
from rollout.core.batches import CapacityStep, capacity_steps, plan_batches, pool_nodes
from rollout.durations import format_duration
from rollout.errors import ConfigError
from rollout.model import Image, Member, Node

if TYPE_CHECKING:
    from rollout.app.operations import Session
    from rollout.app.workspace import Workspace

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
    strategy: str
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
        }


def core_floor(settings: PoolSettings) -> int:
    """The in-service count the core keeps while it replaces nodes."""
    return max(settings.floor, settings.pool_size - settings.max_unavailable)


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
    if settings.strategy == "in_place":
        per_batch += STOP_SECONDS
    total = per_batch * len(batches)
    if canary and batches and settings.soak > 0:
        total += settings.soak
    return Eta(total, per_kind, source)


def build_plan(*, env: str, role: str, target: Image, settings: PoolSettings,
               nodes: Sequence[Node], members: Sequence[Member],
               samples: Mapping[str, Sequence[float]],
               warnings: Sequence[str] = ()) -> PlanReport:
    """The plan of a rollout of the pool to ``target``: pure, see the module doc."""
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
        floor=core_floor(settings), eta=estimate(plan.batches, settings, plan.canary, samples),
        current_images=tuple(sorted({n.image_id for n in pool})),
        warnings=tuple(notes),
    )
    if report.breaches_floor:
        report = replace(report, warnings=(
            *report.warnings, f"{report.floor_message()}; `rollout run` refuses it without "
            "--allow-below-floor"))
    return report


def render_text(report: PlanReport) -> list[str]:
    """The plan as lines for people."""
    lines = [f"plan: {report.env}/{report.role} -> {report.target.version} "
             f"({report.target.id}), strategy {report.strategy}, nothing is changed"]
    if not report.replace:
        lines.append("nothing to replace: every pool node runs the target already")
    lines.append(f"replace ({len(report.replace)}): {', '.join(report.replace) or '-'}")
    lines.append(f"skip, already on target ({len(report.skipped)}): "
                 f"{', '.join(report.skipped) or '-'}")
    for number, batch in enumerate(report.batches):
        label = "canary " if report.canary and number == 0 else ""
        lines.append(f"  {label}batch {number}: {', '.join(batch)}")
    lines.append(f"capacity: {report.in_service} in service now, floor {report.floor}")
    for step in report.steps:
        mark = "  BELOW FLOOR" if step.in_service < report.floor else ""
        lines.append(f"  batch {step.batch} {step.step:<22} in service {step.in_service}"
                     f" / floor {report.floor}, machines {step.nodes}{mark}")
    parts = ", ".join(f"{k} {v:g}s ({report.eta.source[k]})"
                      for k, v in report.eta.per_kind.items())
    lines.append(f"ETA {format_duration(report.eta.seconds)} (per batch: {parts})")
    lines.extend(f"warning: {w}" for w in report.warnings)
    return lines


def plan_for_session(session: Session, target: Image) -> PlanReport:
    """The plan of ``session``'s pool against ``target``, from read-only calls."""
    from rollout.app.operations import check_promotion

    pool = session.pool
    notes: list[str] = []
    unfinished = session.journal.unfinished(pool.env, pool.role)
    if unfinished is not None:
        notes.append(f"rollout {unfinished.id} is unfinished ({unfinished.status.value}): "
                     f"`rollout run` refuses to start until it is resumed or aborted")
    try:
        check_promotion(session, target)
    except ConfigError as exc:
        notes.append(f"`rollout run` would refuse the image: {exc.message}")
    samples = {kind: session.journal.wait_samples(kind, pool.env, pool.role)
               for kind in WAIT_KINDS}
    return build_plan(env=pool.env, role=pool.role, target=target, settings=pool.settings,
                      nodes=session.drivers.provider.list(),
                      members=session.drivers.lb.members(), samples=samples, warnings=notes)


def plan_rollout(ws: Workspace, role: str, *, version: str | None = None,
                 image_id: str | None = None,
                 overrides: Mapping[str, Any] | None = None) -> PlanReport:
    """``rollout plan``: the plan of a rollout of ``role``; changes nothing."""
    from rollout.app.operations import open_session, resolve_target

    session = open_session(ws, role, overrides=overrides)
    try:
        target = resolve_target(session.drivers.images, role, version=version,
                                image_id=image_id)
        return plan_for_session(session, target)
    finally:
        session.journal.close()


__all__ = ["DEFAULT_WAITS", "Eta", "PlanReport", "build_plan", "core_floor", "estimate",
           "plan_for_session", "plan_rollout", "render_text"]
