"""``rollout plan``: what a rollout would do, computed without changing anything.

The plan itself is pure (:func:`rollout.core.plan.build_plan`); this module
gathers its inputs through the pool's drivers and the journal with read-only
calls only (``Provider.list``, ``LoadBalancer.members``), and renders it for
people.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rollout.app.session import Session, resolve_target
from rollout.app.workspace import Workspace
from rollout.core.plan import WAIT_KINDS, PlanReport, build_plan
from rollout.durations import format_duration
from rollout.errors import ConfigError
from rollout.model import Image


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
    pool = session.pool
    notes: list[str] = []
    unfinished = session.journal.unfinished(pool.env, pool.role)
    if unfinished is not None:
        notes.append(f"rollout {unfinished.id} is unfinished ({unfinished.status.value}): "
                     f"`rollout run` refuses to start until it is resumed or aborted")
    try:
        session.check_promotion(target)
    except ConfigError as exc:
        notes.append(f"`rollout run` would refuse the image: {exc.message}")
    samples = {kind: session.journal.wait_samples(kind, pool.env, pool.role)
               for kind in WAIT_KINDS}
    return build_plan(env=pool.env, role=pool.role, target=target, settings=pool.settings,
                      nodes=session.drivers.provider.list(),
                      members=session.drivers.lb.members(), samples=samples, warnings=notes,
                      lb_capacity=session.drivers.lb.capacity())


def refuse_over_lb(plan: PlanReport) -> None:
    """ConfigError (exit 2) when the LB cannot hold the plan's peak."""
    if plan.exceeds_lb:
        raise ConfigError(f"refusing: {plan.lb_message()}", hint=plan.lb_hint())


def plan_rollout(ws: Workspace, role: str, *, version: str | None = None,
                 image_id: str | None = None,
                 overrides: Mapping[str, Any] | None = None) -> PlanReport:
    """``rollout plan``: the plan of a rollout of ``role``; changes nothing."""
    with Session(ws, role, overrides=overrides) as session:
        target = resolve_target(session.drivers.images, role, version=version,
                                image_id=image_id)
        plan = plan_for_session(session, target)
        refuse_over_lb(plan)
        return plan


__all__ = ["PlanReport", "plan_for_session", "plan_rollout", "refuse_over_lb", "render_text"]
