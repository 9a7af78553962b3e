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

Probes cannot stall the loop. With ``concurrent`` (the CLI's controller), each
probe runs in a daemon thread of its own (kept for the next probe once it
answers) and the pass waits for it at most ``probe_wait`` seconds; a probe
still running then is left out of this pass's world (the core reads that as
"no answer yet" and keeps its own deadlines) and its answer is taken by a
later pass. So a node that answers one byte a second delays neither a stop
request nor a deadline check by more than ``probe_wait``, and a stopping
controller never waits for such a probe (it ends by its own total deadline,
see :mod:`rollout.drivers.probe`). Without ``concurrent`` (``workers=0``),
probes run inline, which keeps fake-clock tests deterministic.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable
from concurrent import futures
from typing import TypeVar

from rollout.core.decide import wants_probe
from rollout.core.state import RolloutState, World
from rollout.errors import RolloutError, TransientError
from rollout.events import Event, Waiting
from rollout.model import Member, Node, Readiness
from rollout.protocols import Clock, LoadBalancer, Provider

T = TypeVar("T")


class Observer:
    """Observes one pool; remembers since when it has been unable to."""

    def __init__(self, provider: Provider, lb: LoadBalancer, clock: Clock,
                 emit: Callable[[RolloutState, Event], None], *,
                 probe_wait: float = 0.2, probe_every: float = 0.0) -> None:
        self.provider = provider
        self.lb = lb
        self.clock = clock
        self.emit = emit
        self.probe_wait = probe_wait  # real seconds a pass waits for its probes
        self._probes: dict[str, futures.Future[Readiness]] = {}  # node name -> running probe
        self._last: dict[str, Readiness] = {}  # node name -> its last finished probe
        # A node's next probe starts no sooner than ``probe_every`` clock
        # seconds after its last one started: a pass may come every few
        # milliseconds, and probing a booting node back to back costs the
        # controller a pass per answer and the node a probe it cannot use.
        self.probe_every = probe_every
        self._probed: dict[str, float] = {}  # node name -> its last probe's start
        self.failing_since: float | None = None  # first transient failure in a row
        self.error = ""  # its message

    def observe(self, state: RolloutState, concurrent: bool) -> World | None:
        """The world, or None after a transient error (see the module doc)."""
        try:
            nodes, members = self._list_both(concurrent)
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
        if concurrent:
            probes = self._probe_bounded(wanted)
        else:
            probes = {n.name: self.probe(n) for n in wanted}
        return World(world.nodes, world.members, probes)

    def _probe_bounded(self, wanted: list[Node]) -> dict[str, Readiness]:
        """The answers of the probes of ``wanted`` that finish within
        ``probe_wait``; the others keep running for a later pass."""
        names = {n.name for n in wanted}
        for name in [n for n in self._probes if n not in names]:
            del self._probes[name]  # no longer asked for: its answer is dropped
        for name in [n for n in self._last if n not in names]:
            del self._last[name]
        for name in [n for n in self._probed if n not in names]:
            del self._probed[name]
        now = self.clock.now()
        for node in wanted:
            due = now - self._probed.get(node.name, -math.inf) >= self.probe_every
            if node.name not in self._probes and due:
                self._probed[node.name] = now
                self._probes[node.name] = self._start_probe(node)
        futures.wait([self._probes[n] for n in names if n in self._probes],
                     timeout=self.probe_wait)
        answers: dict[str, Readiness] = {}
        for name in sorted(names):
            future = self._probes.get(name)
            if future is not None and future.done():
                del self._probes[name]
                answers[name] = self._last[name] = future.result()  # a bug re-raises here
            elif name in self._last:
                # Still probing (or its next probe not due): say "not ready"
                # with what the last probe saw, so that a timeout names the
                # node's last answer.
                answers[name] = Readiness(False, self._last[name].detail)
        return answers

    def running(self) -> list[futures.Future[Readiness]]:
        """The probes still running, so the controller's pause can end the
        moment one answers instead of at its next poll."""
        return [f for f in self._probes.values() if not f.done()]

    def _list_both(self, concurrent: bool) -> tuple[list[Node], list[Member]]:
        """The provider's nodes and the LB's members. Concurrently, the two
        calls overlap: each is I/O (an API call, a runtime-API socket), and
        every hop of a replacement waits for one pass, so a pass costs the
        slower call, not their sum. Neither call is atomic with the other
        either way; the core reads any interleaving of the two."""
        if not concurrent:
            return self.provider.list(), self.lb.members()
        asked = _in_thread(self.lb.members)
        try:
            nodes = self.provider.list()
        finally:
            futures.wait([asked])  # never leave the LB call running past the pass
        return nodes, asked.result()

    def _start_probe(self, node: Node) -> futures.Future[Readiness]:
        return _in_thread(lambda: self.probe(node))

    def probe(self, node: Node) -> Readiness:
        """One readiness probe. A transient error is a probe to repeat; another
        declared error says waiting will not help; anything else propagates."""
        try:
            return self.provider.readiness(node)
        except TransientError as exc:
            return Readiness(False, f"probe failed: {exc}")
        except RolloutError as exc:
            return Readiness(False, f"probe failed: {exc}", failed=True)


class _Threads:
    """Daemon threads that run calls and are kept for the next ones.

    A probe needs a thread of its own while it runs (one that hangs until its
    deadline must not hold up another), and a daemon one (a stopping
    controller, and the process, never wait for it). A 1,000-node pool starts
    tens of thousands of probes, though, and a new thread for each cost the
    loop more CPU than the probes' bookkeeping: an idle thread takes the next
    call, and a new one starts only when none is idle. An idle thread ends
    after ``linger`` seconds without a call."""

    def __init__(self, linger: float = 30.0) -> None:
        self.linger = linger
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a call, or about to

    def submit(self, call: Callable[[], T]) -> futures.Future[T]:
        future: futures.Future[T] = futures.Future()

        def run() -> None:
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the loop, which re-raises it
                future.set_exception(exc)

        with self._lock:
            reuse = self._idle > 0
            if reuse:
                self._idle -= 1  # this call is that thread's
        self._calls.put(run)
        if not reuse:
            threading.Thread(target=self._serve, name="observe", daemon=True).start()
        return future

    def _serve(self) -> None:
        while True:
            try:
                call = self._calls.get(timeout=self.linger)
            except queue.Empty:
                with self._lock:
                    # Claimed by a submit that is about to put its call? Then
                    # take it; otherwise leave, no longer counted as idle.
                    if self._calls.empty() and self._idle > 0:
                        self._idle -= 1
                        return
                continue
            call()
            with self._lock:
                self._idle += 1


_THREADS = _Threads()


def _in_thread(call: Callable[[], T]) -> futures.Future[T]:
    """``call()`` in a daemon thread of its own while it runs (see _Threads)."""
    return _THREADS.submit(call)
