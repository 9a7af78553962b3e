"""The controller: observe -> decide -> journal the intent (fsync) -> act ->
journal the outcome, until the rollout is finished.

The decisions come from the pure core (:mod:`rollout.core.decide`); this module
only gathers observations, performs the actions through the drivers and keeps
the journal. Actions of one decision touch different replacements and run
concurrently on a thread pool (``workers=0`` runs them inline, which keeps tests
on a :class:`rollout.testing.FakeClock` deterministic). Waiting is polling the
real state every ``poll_interval`` seconds on the injected clock, and the loop
wakes at once when an action finishes.

Signals: when ``stop_requested()`` turns true, nothing new starts, every
in-flight replacement whose old node still exists is restored (it is retried
from scratch on resume), RETIRING ones finish, the rollout is recorded
``interrupted`` and :class:`rollout.errors.Interrupted` is raised.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

from rollout import names
from rollout.config import Pool
from rollout.core.batches import plan_batches, pool_nodes
from rollout.core.bluegreen import rollback_refusal
from rollout.core.canary import request_continue, request_pause
from rollout.core.decide import (
    Decision,
    apply_outcomes,
    decide,
    halt,
    new_state,
    request_abort,
    request_rollback,
    request_stop,
    resume_state,
)
from rollout.core.state import (
    Action,
    Launch,
    Outcome,
    RolloutState,
    RolloutStatus,
    RunHook,
    SetAdmin,
    SetWeight,
    World,
)
from rollout.engine.doorbell import Doorbell
from rollout.engine.flights import Flight, abandon_smokes
from rollout.engine.observe import Observer
from rollout.engine.perform import perform
from rollout.engine.reap import ReapReport, reap
from rollout.engine.result import RolloutResult, conclude
from rollout.errors import (
    ConfigError,
    FencedOut,
    JournalError,
    NotFoundError,
    NothingToDo,
    RolloutError,
    UnfinishedRolloutError,
)
from rollout.events import Event, RollbackRequested, RolloutStarted, StepFinished, StepStarted
from rollout.model import Image
from rollout.protocols import (
    Analyzer,
    Clock,
    HookRunner,
    LoadBalancer,
    Provider,
    ShadowReplayer,
    SmokeRunner,
)
from rollout.store.journal import Journal
from rollout.store.lease import Lease
from rollout.store.requests import RequestKind

__all__ = ["Controller", "RolloutResult"]


def _new_id() -> str:
    return "r" + uuid.uuid4().hex[:8]


#: The pause's lingering after a first answer, for controllers on the real
#: clock (see ``Controller.gather``): 10 ms, small beside any driver call.
GATHER = 0.01


class Controller:
    """Runs, resumes, aborts and reaps the rollouts of one pool."""

    def __init__(
        self,
        *,
        pool: Pool,
        provider: Provider,
        lb: LoadBalancer,
        smoke: SmokeRunner,
        journal: Journal,
        clock: Clock,
        on_event: Callable[[Event], None] = lambda e: None,
        stop_requested: Callable[[], bool] = lambda: False,
        poll_interval: float = 0.1,
        workers: int = 8,
        lease: Lease | None = None,
        new_id: Callable[[], str] = _new_id,
        after_effect: Callable[[Action, Outcome], None] | None = None,
        hooks: HookRunner | None = None,
        analyzer: Analyzer | None = None,
        shadow: ShadowReplayer | None = None,
        doorbell: Doorbell | None = None,
        gather: float = 0.0,
    ) -> None:
        self.pool = pool
        self.provider = provider
        self.lb = lb
        self.smoke = smoke
        self.journal = journal
        self.clock = clock
        self.on_event = on_event
        self.stop_requested = stop_requested
        self.poll_interval = poll_interval
        self.workers = workers
        self.lease = lease
        self.new_id = new_id
        # Called with each driver call's outcome before it is committed (the
        # crash tests' fault hook, rollout.app.faults).
        self.after_effect = after_effect
        self.hooks = hooks
        self.analyzer = analyzer  # runs rollout.analyses (None: the pool uses none)
        self.shadow = shadow  # runs the rollout.shadow gate (None: the pool has none)
        # `rollout rollback`'s fast way in (rollout.engine.doorbell); real time only.
        self.doorbell = doorbell
        # Real seconds a pause lingers once an action or a probe has finished,
        # so that the others finishing with it are taken in the same pass: a
        # pass costs CPU for every replacement, and without this a batch of
        # 100 paid one pass per answer (GATHER; real time only).
        self.gather = gather
        # The pass does not wait for its probes: the pause ends the moment
        # one answers (see _pause), so a slow probe delays no other outcome.
        # A node is probed at most once per poll interval.
        self.observer = Observer(provider, lb, clock, self._emit, probe_wait=0.0,
                                 probe_every=poll_interval)

    # --- entry points ---------------------------------------------------------------

    def run(self, target: Image, *, only: Sequence[str] | None = None,
            kind: str = "rollout") -> RolloutResult:
        """Replace the pool's nodes with nodes of ``target``. Raises
        UnfinishedRolloutError (exit 3) when the pool has an unfinished rollout,
        RolloutFailed (1), RolloutHalted (4) or Interrupted (130).

        ``only`` names the nodes to replace even if they run ``target`` already
        (phoenix, ``rollout replace``); each must be in the pool (running and
        READY in the LB). ``kind`` is recorded with the rollout."""
        env, role = self.pool.env, self.pool.role
        names.image_id(target.id, "target image")
        if target.role != role:
            raise ConfigError(f"image {target.id} is of role {target.role!r}, not {role!r}",
                              hint=f"pick an image of role {role!r} (rollout images {role})")
        unfinished = self.journal.unfinished(env, role)
        if unfinished is not None:
            raise UnfinishedRolloutError(
                f"pool {env}/{role} has an unfinished rollout {unfinished.id} "
                f"({unfinished.status.value})",
                hint=f"finish it with `rollout resume --role {role}` or restore the old nodes "
                f"with `rollout abort --role {role}`",
            )
        nodes, members = self.provider.list(), self.lb.members()
        by_target = {m.target: m for m in members if m.target}
        members_now = pool_nodes(nodes, by_target)
        if only is not None:
            present = {n.name for n in members_now}
            missing = sorted(set(only) - present)
            if missing:
                raise NotFoundError(
                    f"pool {env}/{role}: {', '.join(missing)} not running and READY in the "
                    "load balancer, so not replaceable through a rollout",
                    hint=f"see `rollout lab status`; `rollout reap --role {role}` removes "
                    "leftovers",
                )
        weighs = any(step.weight is not None for step in self.pool.settings.canary_steps)
        if weighs and any(m.weight is None for m in members if m.target):
            raise ConfigError(
                f"pool {env}/{role}: canary_steps has weight steps, but this load balancer "
                "has no member weights",
                hint="remove the weight steps (keep pause and analysis steps), or use HAProxy",
            )
        plan = plan_batches(members_now, target, self.pool.settings, only=only)
        rollout_id = names.rollout_id(self.new_id(), "rollout id")
        state = new_state(rollout_id, env, role, target, self.pool.settings, plan,
                          self.clock.now(), kind=kind)
        self.journal.create(state, pid=os.getpid(), host=socket.gethostname())
        self._emit(state, RolloutStarted(
            state.id, self.clock.now(), env=env, role=role, target_image=target.id,
            target_version=target.version, strategy=state.strategy.value,
            replacements=len(state.replacements), batches=len(plan.batches),
            already_on_target=len(plan.skipped),
        ))
        return self._conclude(self._drive(state))

    def resume(self, rollout_id: str | None = None) -> RolloutResult:
        """Reconcile an unfinished rollout against the world and complete it
        (or finish restoring it)."""
        state = self._unfinished(rollout_id, "resume")
        state = resume_state(state, self.clock.now())
        self._claim(state)
        return self._conclude(self._drive(state))

    def abort(self, rollout_id: str | None = None) -> RolloutResult:
        """Restore the old node of every replacement that can be restored."""
        state = self._unfinished(rollout_id, "abort")
        state = self._commit(request_abort(state, self.clock.now()))
        self._claim(state)
        return self._conclude(self._drive(state))

    def rollback(self, rollout_id: str | None = None) -> RolloutResult:
        """Blue-green, within scale_down_delay, no live controller: switch back
        to the warm blue pool at once, then remove the green one."""
        state = self._unfinished(rollout_id, "roll back")
        refusal = rollback_refusal(state)
        if refusal is not None:
            raise ConfigError(refusal, hint=f"see `rollout history --role {state.role}`")
        state = resume_state(state, self.clock.now())
        state = self._commit(request_rollback(state, self.clock.now()))
        self._claim(state)
        return self._conclude(self._drive(state))

    def reap(self, *, dry_run: bool = False) -> ReapReport:
        """Remove nodes and LB members that rollouts created but no journal owns."""
        return reap(self.pool, self.provider, self.lb, self.journal, self.clock,
                    self.on_event, dry_run=dry_run)

    # --- the loop ---------------------------------------------------------------------

    def _drive(self, state: RolloutState) -> RolloutState:
        pool = futures.ThreadPoolExecutor(self.workers) if self.workers > 0 else None
        inflight: dict[futures.Future[Outcome], Flight] = {}
        abandoned = False  # smoke tests a stop left running (see rollout.engine.flights)
        # Operator requests (pause, continue) are read at most once per poll
        # interval: a pass may come every few milliseconds, a person's request
        # can wait that long, and the read is a query per pass.
        asked = -math.inf
        try:
            while True:
                state = self._collect(state, inflight)
                if self.lease is not None and self.lease.lost:
                    self._settle(state, inflight)
                    raise self._lost(state.id)
                running = state.status is RolloutStatus.RUNNING
                if running and not state.stopping and self.stop_requested():
                    state = self._commit(request_stop(state, self.clock.now()))
                if state.stopping:
                    abandoned = abandon_smokes(state, inflight, self.journal, self.clock,
                                               self.on_event) or abandoned
                if running and (now := self.clock.now()) - asked >= self.poll_interval:
                    asked = now
                    state = self._requests(state)
                state, world = self._look(state, pool)
                if running and self.doorbell is not None:
                    self._answer(state, self.doorbell)
                if running and state.blue_green is not None:
                    # After the observation, so a request that came in while
                    # the pool was observed is acted on in this very pass.
                    state = self._honour_rollback(state)
                if world is not None:
                    busy = frozenset(f.action.index for f in inflight.values())
                    decision = decide(state, world, self.clock.now(), busy)
                    state = self._start(decision, pool, inflight)
                if state.status is not RolloutStatus.RUNNING:
                    self._settle(state, inflight)
                    return state
                self._pause(inflight)
        except RolloutError:
            raise
        except Exception:
            # A bug, in a driver's observation or here: not a state to wait
            # out. Journal the outcomes of running actions, then let it reach
            # the CLI as an internal error (exit 70, traceback file); the
            # rollout stays unfinished, as after a crash, for `resume`.
            self._settle(state, inflight)
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=not abandoned)

    def _honour_rollback(self, state: RolloutState) -> RolloutState:
        """A ``rollback_requested`` event journaled by `rollout rollback` while
        this controller holds the pool in a blue-green scale_down_delay."""
        if rollback_refusal(state) is not None:
            return state
        if not self.journal.requested(state.id, RollbackRequested.kind):
            return state
        return self._commit(request_rollback(state, self.clock.now()))

    def _answer(self, state: RolloutState, doorbell: Doorbell) -> None:
        """Journal a rollback rung at the doorbell as `rollout rollback` would
        have (then :meth:`_honour_rollback` takes it from the journal); refuse
        one this rollout cannot honour, so its client runs the full CLI."""
        refusal = rollback_refusal(state)
        t = self.pool.settings.timeouts
        for ring in doorbell.take():
            if refusal is not None:
                ring.refuse(refusal)
                continue
            # The client waits as long as `rollout rollback` waits for a holder.
            ring.accept(patience=t.drain + t.lb_up + self.pool.settings.lease_ttl)
            self._emit(state, RollbackRequested(state.id, self.clock.now(), by=ring.by))

    def _look(self, state: RolloutState, pool: futures.ThreadPoolExecutor | None,
              ) -> tuple[RolloutState, World | None]:
        """Observe; halt when that fails for good or for too long."""
        observer = self.observer
        try:
            world = observer.observe(state, concurrent=pool is not None)
        except RolloutError as exc:
            # A declared driver error that is not transient (access denied, a
            # corrupt record, a misconfigured LB): waiting would only run into
            # the progress deadline.
            return self._commit(halt(state, f"cannot observe the pool: {exc}",
                                     self.clock.now())), None
        if world is None and observer.failing_since is not None:
            waited = self.clock.now() - observer.failing_since
            t = state.settings.timeouts
            if waited > min(t.observe, t.progress_deadline):
                state = self._commit(halt(state, f"cannot observe the pool for "
                                                 f"{waited:.0f}s (timeouts.observe "
                                                 f"{t.observe:g}s): {observer.error}",
                                          self.clock.now()))
        return state, world

    def _start(self, decision: Decision, pool: futures.ThreadPoolExecutor | None,
               inflight: dict[futures.Future[Outcome], Flight]) -> RolloutState:
        """Journal the decision and, while the rollout runs, the intents of its
        actions (one transaction), then start the actions."""
        state, actions = decision.state, decision.actions
        if state.status is not RolloutStatus.RUNNING or not actions:
            return self._commit(decision)
        now = self.clock.now()
        intents = []
        for action in actions:
            detail = action.admin.value if isinstance(action, SetAdmin) else ""
            if isinstance(action, SetWeight):
                detail = "normal" if action.weight is None else str(action.weight)
            if isinstance(action, Launch) and action.spec is not None:
                detail = action.spec.image.id
            if isinstance(action, RunHook) and action.call is not None:
                detail = action.call.point.value
            intents.append((action.replacement, action.kind, action.node.name, now, detail))
        started = tuple(StepStarted(state.id, now, index=a.replacement, node=a.node.name,
                                    step=a.kind) for a in actions)
        # Every intent is durable (one transaction, one fsync for the whole
        # decision and its intents) before any of the side effects starts.
        step_ids = self.journal.decided(state, waits=decision.waits, events=decision.events,
                                        intents=intents, started=started)
        for event in (*decision.events, *started):
            self.on_event(event)
        for action, step_id in zip(actions, step_ids, strict=True):
            if pool is None:
                future: futures.Future[Outcome] = futures.Future()
                future.set_result(self._perform(action))
            else:
                future = pool.submit(self._perform, action)
            inflight[future] = Flight(action, step_id)
        return state

    def _perform(self, action: Action) -> Outcome:
        # The intent was fenced when it was written, but a process frozen
        # between that write and this call may thaw after another controller
        # took the pool over: the lease counts as lost (on the monotonic
        # clock) before anyone else can take it, so refuse the call then.
        if self.lease is not None and self.lease.lost:
            raise self._lost(None)
        outcome = perform(action, self.provider, self.lb, self.smoke, self.clock,
                          hooks=self.hooks, analyzer=self.analyzer, shadow=self.shadow)
        if self.after_effect is not None:
            self.after_effect(action, outcome)
        return outcome

    def _lost(self, rollout_id: str | None) -> FencedOut:
        """The error that stops a controller whose lease counts as lost, naming
        whoever holds the pool now (when the store can say)."""
        assert self.lease is not None
        try:
            holder = self.lease.current()
        except JournalError:
            holder = None
        if holder is not None and holder.holder != self.lease.holder:
            now = (f"{holder.holder} (host {holder.host}, pid {holder.pid}) holds it at "
                   f"epoch {holder.epoch}")
        else:
            now = "it was not renewed in time, so it counts as lost"
        during = f" while rollout {rollout_id} ran" if rollout_id else ""
        return FencedOut(
            f"pool {self.lease.key}: this controller ({self.lease.holder}) lost its lease "
            f"(epoch {self.lease.epoch}){during}: {now}; it stopped before acting",
            hint=f"check `rollout status --role {self.pool.role}`; the current holder "
            f"carries on, or `rollout resume --role {self.pool.role}` once the pool is free",
        )

    def _collect(self, state: RolloutState,
                 inflight: dict[futures.Future[Outcome], Flight], apply: bool = True,
                 ) -> RolloutState:
        """Journal the outcomes of every finished action and fold them into the
        state, all in one transaction."""
        done = [f for f in inflight if f.done()]
        if not done:
            return state
        now = self.clock.now()
        finished: list[tuple[int, bool, str, float, float]] = []
        events: list[Event] = []
        outcomes: list[tuple[Action, Outcome]] = []
        for future in done:
            flight = inflight.pop(future)
            outcome = future.result()  # re-raises a BaseException from the worker
            action = flight.action
            ok = outcome.ok and (outcome.smoke is None or outcome.smoke.passed)
            error = outcome.error or (outcome.smoke.summary if outcome.smoke and not ok else "")
            finished.append((flight.step_id, ok, error, now, outcome.duration))
            events.append(StepFinished(
                state.id, now, index=action.replacement, node=action.node.name,
                step=action.kind, ok=ok, duration=outcome.duration, error=error,
            ))
            outcomes.append((action, outcome))
        decision = apply_outcomes(state, outcomes, now) if apply else Decision(state)
        state = decision.state
        self.journal.commit(state, waits=decision.waits,
                            events=(*events, *decision.events), finished=finished)
        for event in (*events, *decision.events):
            self.on_event(event)
        return state

    def _settle(self, state: RolloutState,
                inflight: dict[futures.Future[Outcome], Flight]) -> None:
        """Let running actions finish and journal their outcomes (too late to matter)."""
        while inflight:
            futures.wait(list(inflight), return_when=futures.FIRST_COMPLETED)
            self._collect(state, inflight, apply=False)

    def _pause(self, inflight: dict[futures.Future[Outcome], Flight]) -> None:
        if any(f.done() for f in inflight):
            return
        # A readiness probe answering is a change too: waking on it (not at
        # the next poll) starts the next probe, or the smoke test, at once.
        probes = self.observer.running()
        if inflight:
            waiting: list[futures.Future[Any]] = [*inflight, *probes]
            done, _ = futures.wait(waiting, timeout=self.poll_interval,
                                   return_when=futures.FIRST_COMPLETED)
            if done and self.gather > 0:
                futures.wait(waiting, timeout=self.gather, return_when=futures.ALL_COMPLETED)
        elif probes:
            started = self.clock.now()
            done, _ = futures.wait(probes, timeout=self.poll_interval,
                                   return_when=futures.FIRST_COMPLETED)
            if done and self.gather > 0:
                futures.wait(probes, timeout=self.gather, return_when=futures.ALL_COMPLETED)
            if not done:
                # The rest of the interval, in the clock's time: nothing on a
                # real clock, the whole interval on a virtual one (whose
                # deadlines would otherwise never come while a probe hangs).
                self.clock.sleep(self.poll_interval - (self.clock.now() - started))
        elif self.doorbell is not None:
            self.doorbell.wait(self.poll_interval)  # a rollback ends the wait at once
        else:
            self.clock.sleep(self.poll_interval)

    def _requests(self, state: RolloutState) -> RolloutState:
        """Fold the open operator requests (pause, continue) into the state,
        journal it, then mark them consumed (applying one twice is harmless)."""
        requests = self.journal.open_requests(state.id)
        if not requests:
            return state
        now = self.clock.now()
        events: list[Event] = []
        for request in requests:
            change = request_pause if request.kind is RequestKind.PAUSE else request_continue
            state, event = change(state, now, request.by)
            events.append(event)
        state = self._commit(Decision(state, events=tuple(events)))
        self.journal.consume(requests, now)
        return state

    # --- journal and events -----------------------------------------------------------------

    def _commit(self, decision: Decision) -> RolloutState:
        state = decision.state
        self.journal.commit(state, waits=decision.waits, events=decision.events)
        for event in decision.events:
            self.on_event(event)
        return state

    def _emit(self, state: RolloutState, event: Event) -> None:
        self.journal.record(state.id, events=(event,))
        self.on_event(event)

    def _claim(self, state: RolloutState) -> None:
        self.journal.save(state)
        self.journal.claim(state.id, os.getpid(), socket.gethostname())
        self._emit(state, RolloutStarted(
            state.id, self.clock.now(), env=state.env, role=state.role,
            target_image=state.target.id, target_version=state.target.version,
            strategy=state.strategy.value, replacements=len(state.replacements),
            batches=len({r.batch for r in state.replacements}),
            already_on_target=len(state.skipped_nodes), resumed=True,
        ))

    def _unfinished(self, rollout_id: str | None, verb: str) -> RolloutState:
        env, role = self.pool.env, self.pool.role
        if rollout_id is None:
            state = self.journal.unfinished(env, role)
            if state is None and verb == "resume":
                # Nothing to converge is the state resume aims for: exit 0.
                raise NothingToDo(f"pool {env}/{role} has no unfinished rollout: nothing to do",
                                  hint="see `rollout history`")
            if state is None:
                raise NotFoundError(f"pool {env}/{role} has no unfinished rollout to {verb}",
                                    hint="see `rollout history`")
            return state
        state = self.journal.get(names.rollout_id(rollout_id, "rollout id"))
        if (state.env, state.role) != (env, role):
            raise ConfigError(f"rollout {rollout_id} belongs to pool {state.env}/{state.role}, "
                              f"not {env}/{role}", hint=f"pass --env {state.env} --role "
                              f"{state.role}")
        if not state.status.unfinished:
            raise ConfigError(f"rollout {rollout_id} is {state.status.value}; nothing to {verb}",
                              hint="see `rollout show " + rollout_id + "`")
        return state

    def _conclude(self, state: RolloutState) -> RolloutResult:
        return conclude(state, self.journal.wait_totals(state.id), self.clock.now())
