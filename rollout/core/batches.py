"""Planning: which nodes to replace, in which batches, and what capacity each step
leaves. Pure; ``rollout plan`` shows it and :class:`rollout.engine.controller.Controller`
starts a rollout from it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from rollout.config import PoolSettings, Strategy
from rollout.model import Admin, Image, Member, Node, NodeState


@dataclass(frozen=True)
class Plan:
    """Batches of old nodes in the order they are replaced; the canary batch
    (when ``canary`` > 0) comes first. ``skipped`` are already on the target."""

    batches: tuple[tuple[Node, ...], ...]
    skipped: tuple[Node, ...]
    canary: bool

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(n for batch in self.batches for n in batch)


@dataclass(frozen=True)
class CapacityStep:
    """Projected capacity at one step of the plan (nothing failing)."""

    batch: int
    step: str  # "launch", "drain", "retire" ...
    in_service: int  # members taking traffic
    nodes: int  # machines that exist (the cost of a surge)
    unavailable: int  # pool_size - in_service, never below 0


def floor(settings: PoolSettings) -> int:
    """The fewest nodes in service the core keeps while it replaces nodes:
    ``min_healthy`` as a count, or ``pool_size - max_unavailable`` if higher.

    The one definition of the floor: the core's capacity check, ``rollout
    plan``'s breach check and phoenix's health check all use it."""
    return max(settings.min_healthy_nodes, settings.pool_size - settings.max_unavailable)


def pool_nodes(nodes: Sequence[Node], members: Mapping[str, Member]) -> list[Node]:
    """The nodes that make up the pool now: running (or booting) and a member of
    the LB with admin READY. Others (orphans, parked nodes) are left to reap."""
    found = []
    for node in nodes:
        if node.state not in (NodeState.RUNNING, NodeState.PENDING):
            continue
        member = members.get(node.lb_target)
        if member is not None and member.admin is Admin.READY:
            found.append(node)
    return found


def plan_batches(nodes: Sequence[Node], target: Image, settings: PoolSettings,
                 only: Collection[str] | None = None) -> Plan:
    """Split the pool's ``nodes`` into batches, oldest first.

    Nodes already on ``target`` are skipped, so a re-run is a no-op. The first
    batch holds ``settings.canary`` nodes when canary > 0; the rest hold
    ``settings.batch_size`` each.

    ``only`` (node names) replaces exactly those nodes, even when they run the
    target already (phoenix and ``rollout replace``); the others are left alone
    and are not listed as skipped.
    """
    if only is not None:
        todo = sorted((n for n in nodes if n.name in only), key=lambda n: (n.created_at, n.name))
        skipped: tuple[Node, ...] = ()
    else:
        todo = sorted(
            (n for n in nodes if n.image_id != target.id), key=lambda n: (n.created_at, n.name)
        )
        skipped = tuple(sorted((n for n in nodes if n.image_id == target.id),
                               key=lambda n: n.name))
    batches: list[tuple[Node, ...]] = []
    if settings.strategy is Strategy.BLUE_GREEN:
        # The whole green pool comes up at once; the switch is its canary.
        return Plan(batches=(tuple(todo),) if todo else (), skipped=skipped, canary=False)
    canary = settings.canary > 0 and bool(todo)
    if canary:
        batches.append(tuple(todo[: settings.canary]))
        todo = todo[settings.canary :]
    size = settings.batch_size
    for start in range(0, len(todo), size):
        batches.append(tuple(todo[start : start + size]))
    return Plan(batches=tuple(batches), skipped=skipped, canary=canary)


def capacity_steps(plan: Plan, settings: PoolSettings, pool_size: int | None = None) -> list[
    CapacityStep
]:
    """What each batch does to capacity when all goes well, for ``rollout plan``.

    Surge adds a batch of nodes before draining the old ones, so in-service never
    drops; in place drains first, so in-service drops by the batch size.
    """
    size = pool_size if pool_size is not None else settings.pool_size
    steps: list[CapacityStep] = []

    def add(batch: int, step: str, in_service: int, nodes: int) -> None:
        steps.append(CapacityStep(batch, step, in_service, nodes, max(0, size - in_service)))

    for number, batch in enumerate(plan.batches):
        n = len(batch)
        if settings.strategy is Strategy.BLUE_GREEN:
            add(number, "launch green", size, size + n)
            add(number, "switch to green", size, size + n)
            add(number, "blue warm (scale_down_delay)", size, size + n)
            add(number, "retire blue", size, size)
        elif settings.strategy is Strategy.SURGE:
            add(number, "launch", size, size + n)
            add(number, "add to LB", size + n, size + n)
            add(number, "drain old", size, size + n)
            add(number, "retire old", size, size)
        else:
            add(number, "drain old", size - n, size)
            add(number, "stop old, launch new", size - n, size + n)
            add(number, "add to LB", size, size + n)
            add(number, "retire old", size, size)
    return steps
