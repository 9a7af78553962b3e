"""One observation of the pool per pass of the controller: what the provider
lists, what the LB says, and the readiness probes the core asks for.

Observation only reads (see :mod:`rollout.protocols`). Its errors are sorted
here, and nowhere else:

| raised by list/members/readiness | what happens                              |
|----------------------------------|-------------------------------------------|
| ``TransientError``               | no world this pass (a probe: not ready);  |
|                                  | tried again on the next pass, the wait is |
|                                  | reported and bounded by the controller    |
| another ``RolloutError``         | list/members: propagates (the controller  |
|                                  | halts the rollout); a probe: ``failed``,  |
|                                  | the node will not become ready by waiting |
| anything else (a bug)            | propagates: an internal error             |
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures

from rollout.core.decide import wants_probe
from rollout.core.state import RolloutState, World
from rollout.errors import RolloutError, TransientError
from rollout.events import Event, Waiting
from rollout.model import Node, Readiness
from rollout.protocols import Clock, LoadBalancer, Provider


class Observer:
    """Observes one pool; remembers since when it has been unable to."""

    def __init__(self, provider: Provider, lb: LoadBalancer, clock: Clock,
                 emit: Callable[[RolloutState, Event], None]) -> None:
        self.provider = provider
        self.lb = lb
        self.clock = clock
        self.emit = emit
        self.failing_since: float | None = None  # first transient failure in a row
        self.error = ""  # its message

    def observe(self, state: RolloutState,
                pool: futures.ThreadPoolExecutor | None) -> World | None:
        """The world, or None after a transient error (see the module doc)."""
        try:
            nodes, members = self.provider.list(), self.lb.members()
        except TransientError as exc:
            message = f"cannot observe the pool: {exc}"
            if message != self.error:
                self.emit(state, Waiting(state.id, self.clock.now(), reason=message))
            self.error = message
            if self.failing_since is None:
                self.failing_since = self.clock.now()
            return None
        self.failing_since, self.error = None, ""
        world = World.of(nodes, members)
        wanted = [world.nodes[n] for n in sorted(wants_probe(state, world)) if n in world.nodes]
        if pool is not None and len(wanted) > 1:
            probes = dict(zip([n.name for n in wanted], pool.map(self.probe, wanted),
                              strict=True))
        else:
            probes = {n.name: self.probe(n) for n in wanted}
        return World(world.nodes, world.members, probes)

    def probe(self, node: Node) -> Readiness:
        """One readiness probe. A transient error is a probe to repeat; another
        declared error says waiting will not help; anything else propagates."""
        try:
            return self.provider.readiness(node)
        except TransientError as exc:
            return Readiness(False, f"probe failed: {exc}")
        except RolloutError as exc:
            return Readiness(False, f"probe failed: {exc}", failed=True)
