"""The physical limit of a rollout: its critical path, from component times. Pure.

A rollout cannot finish faster than the world lets it: a new node takes its
time to boot, the smoke suite its time to run, the LB ``rise`` checks of
``inter`` seconds to call a server UP, an old node's sessions their time to
end, and the canary soak is configured. Those :class:`Components` are
measured without the controller (a probe that launches its own node, the
smoke suite run alone, HAProxy's session counter watched during a drain; on
the fakes, their configured latencies), so everything else the wall time
holds is the controller's: its driver calls (launch, add, set_admin, remove,
destroy), its journal writes and its detection delay. Wall ÷ this limit is
the controller's overhead; wall ÷ the journal's phase times is not (those
phases run until the controller observes their end, so they contain it).

The order follows the strategy (:mod:`rollout.core.state`):

- surge and in place: per node boot → smoke → LB rise → drain (in place
  drains first; the sum is the same); a batch takes as long as its slowest
  node; batches run one after the other; the canary batch adds the soak;
- blue-green: the whole green pool at once (boot → smoke → LB rise), then the
  blue pool stays warm for ``scale_down_delay``, inside which it drains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rollout.config import PoolSettings, Strategy
from rollout.errors import ConfigError


@dataclass(frozen=True)
class Components:
    """One replacement's physical times, in seconds; ``lb_rise`` = rise x inter."""

    boot: float
    smoke: float
    lb_rise: float
    drain: float

    @property
    def total(self) -> float:
        return self.boot + self.smoke + self.lb_rise + self.drain

    @property
    def until_up(self) -> float:
        """Launch to UP in the LB: what a blue-green green node needs before the switch."""
        return self.boot + self.smoke + self.lb_rise


@dataclass(frozen=True)
class CriticalPath:
    """The limit: one figure per batch (its slowest node, plus the soak or the
    warm delay where the strategy waits one) and their sum."""

    batches: tuple[float, ...]

    @property
    def total(self) -> float:
        return sum(self.batches)

    def ratio(self, wall: float) -> float:
        """Wall time ÷ the limit (≥ 1 unless the components were mismeasured)."""
        if self.total <= 0:
            raise ValueError("the critical path is 0 s long: no component was measured")
        return wall / self.total


def batch_sizes(settings: PoolSettings, nodes: int) -> tuple[int, ...]:
    """How many of ``nodes`` replacements each batch holds, as
    :func:`rollout.core.batches.plan_batches` splits them."""
    if nodes <= 0:
        return ()
    if settings.strategy is Strategy.BLUE_GREEN:
        return (nodes,)
    sizes: list[int] = []
    left = nodes
    if settings.canary > 0:
        sizes.append(min(settings.canary, left))
        left -= sizes[0]
    while left > 0:
        sizes.append(min(settings.batch_size, left))
        left -= sizes[-1]
    return tuple(sizes)


def critical_path(batches: Sequence[Sequence[Components]], *, soak: float = 0.0,
                  soak_batch: int | None = 0, strategy: Strategy = Strategy.SURGE,
                  warm: float = 0.0) -> CriticalPath:
    """The critical path of ``batches`` (each a sequence of its nodes' components).

    ``soak`` is added to batch ``soak_batch`` (None: no soak). For blue-green
    (one batch) the batch lasts its slowest green node's launch-to-UP plus the
    longer of ``warm`` (scale_down_delay) and the blue drain."""
    figures: list[float] = []
    for number, nodes in enumerate(batches):
        if not nodes:
            figures.append(0.0)
            continue
        if strategy is Strategy.BLUE_GREEN:
            slowest = max(c.until_up for c in nodes) + max(warm, max(c.drain for c in nodes))
        else:
            slowest = max(c.total for c in nodes)
        figures.append(slowest + (soak if number == soak_batch else 0.0))
    return CriticalPath(tuple(figures))


def pool_limit(settings: PoolSettings, nodes: int, components: Components) -> CriticalPath:
    """The limit of replacing ``nodes`` nodes with ``settings``, each node
    taking ``components``; the soak and the warm delay come from the settings."""
    if settings.canary_steps:
        raise ConfigError(
            "the critical path of canary_steps (weighted steps, pauses, analyses) is not "
            "modelled; measure the overhead on a pool with a plain canary soak")
    sizes = batch_sizes(settings, nodes)
    soaks = settings.canary > 0 and settings.strategy is not Strategy.BLUE_GREEN
    return critical_path(
        [[components] * n for n in sizes], soak=settings.soak if soaks else 0.0,
        soak_batch=0 if soaks else None, strategy=settings.strategy,
        warm=settings.scale_down_delay)
