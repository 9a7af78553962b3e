"""The rollout's state machine: phases, replacements, the rollout and its actions.

One :class:`Replacement` per old node. Its phase only moves forward, driven by
:func:`rollout.core.decide.decide` (from what it observes) and
:func:`rollout.core.decide.apply_outcome` (from what an action returned).

Surge (the default) — the new node serves before the old one stops::

    phase      what the controller does / waits for         exit (observed)          next
    ---------  -------------------------------------------  -----------------------  ---------
    PENDING    nothing; waits for its batch's turn          earlier batches released LAUNCHING
    LAUNCHING  provider.launch(new) (idempotent by name)    new node listed          BOOTING
    BOOTING    probe readiness        (timeouts.ready)      probe says ready         SMOKING
               (the probe names a setup step: take it,
               provider.attach_volume / join_group)
               (never ready, or booted degraded, and       boot_retries left        RELAUNCHING)
    RELAUNCHING provider.destroy(new), finish_removal;      failed node gone         LAUNCHING
               then a new name, attempt + 1 (the old
               node is untouched)
    SMOKING    smoke.run(new)         (timeouts.smoke)      the suite passed         ADDING
    ADDING     (rollout.shadow: replay, compare; core/shadow_gate.py)
               lb.add(new)                                  member READY             RISING
    RISING     wait for the LB's check (timeouts.lb_up)     member UP + capacity ok  DRAINING
    DRAINING   old -> DRAIN           (timeouts.drain)      old sessions 0 / timeout STANDBY
    STANDBY    old -> MAINT (+ stop if standby: stopped);   whole batch parked and   RETIRING
               the canary batch soaks, comparing counters   soak verdict passed
    RETIRING   lb.remove(old), provider.destroy(old), then  old gone from LB + list  DONE
               finish_removal while it is listed REMOVING   (fully: not even REMOVING)

In place (pools that cannot surge) — the old node leaves first::

    PENDING -> DRAINING (capacity checked first) -> PARKING (old MAINT + stopped)
            -> LAUNCHING -> BOOTING -> SMOKING -> ADDING -> RISING -> STANDBY
            -> RETIRING (remove the old slot, destroy the stopped old) -> DONE

A failure in any phase before RETIRING (a driver error, a deadline, a failed
smoke) moves the replacement to RESTORING. RESTORING puts the OLD node back
first (start it if stopped, wait until ready, taking any setup step its probe
names, admin READY, wait until UP) and only then takes the new one out (DRAIN,
wait sessions 0 or timeouts.drain, remove, destroy, finish the removal), so
capacity never dips::

    any phase < RETIRING --failure/abort/stop/budget/canary--> RESTORING
    RESTORING --old in service, new removed and destroyed--> RESTORED
    RESTORING (reason: interrupted) --same--> PENDING with attempt + 1
    PENDING --rollout failing or aborted--> SKIPPED

Pools with a data volume (``volume`` in the settings) must use ``strategy:
in_place`` (the config refuses anything else): the volume can only move once
the old node is STOPPED, which PARKING guarantees, and the launch of the new
node carries ``LaunchSpec.volume_from`` = the old node. RESTORING in such a
pool gives the volume back: it first takes the new node out (DRAIN, wait
sessions 0 or timeouts.drain, remove) and destroys it, and only then starts
the old node, which gets its volume again (capacity is already down by the
batch in place, so nothing more dips)::

    RESTORING (volume, old stopped) --new out of LB, destroyed--> start old -> ...

Lifecycle hooks (:mod:`rollout.hooks`, :mod:`rollout.core.lifecycle`) run
inside these phases, each before the phase's own step: after_boot in SMOKING,
before_traffic in ADDING, after_traffic in RISING (once UP), before_drain in
DRAINING, before_destroy in STANDBY (surge) or PARKING (in place); a failing
hook fails the replacement like any step. before_rollout holds the first
batch; after_rollout holds the end of a rollout that would succeed.

Errors while RESTORING or RETIRING are retried with backoff on the clock; after
:data:`MAX_RETRIES` the rollout halts (status ``halted``: resume or abort).
Terminal phases: DONE, RESTORED, SKIPPED.

Rollout statuses: ``running`` -> ``succeeded`` | ``failed`` (failed replacements
or the rollout were restored) | ``halted`` (could not restore; resume or abort)
| ``aborted`` | ``interrupted`` (a signal; resumable).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from rollout.config import PoolSettings
from rollout.config import Strategy as Strategy
from rollout.core.analysis import AnalysisContext, AnalysisPoint, Verdict
from rollout.core.bluegreen_state import BlueGreen
from rollout.core.shadow import ShadowTarget, ShadowVerdict
from rollout.core.window_state import Window
from rollout.hooks import HookCall
from rollout.model import (
    Admin,
    FailureKind,
    Image,
    LaunchSpec,
    Member,
    Node,
    NodeState,
    Readiness,
    SmokeResult,
)

#: Attempts of a restore or retire action before the rollout halts.
MAX_RETRIES = 5


class Phase(StrEnum):
    PENDING = "pending"
    LAUNCHING = "launching"
    BOOTING = "booting"
    SMOKING = "smoking"
    ADDING = "adding"
    RISING = "rising"
    DRAINING = "draining"
    RELAUNCHING = "relaunching"  # the new node failed to boot: destroy it, launch another
    PARKING = "parking"  # in place only: old MAINT and stopped before the launch
    STANDBY = "standby"
    STAGED = "staged"  # blue-green: green in the LB, drained, until the switch
    WARM = "warm"  # blue-green: switched; blue drained and warm for scale_down_delay
    RETIRING = "retiring"
    DONE = "done"
    RESTORING = "restoring"
    RESTORED = "restored"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


#: The phases a replacement ends in.
TERMINAL = frozenset({Phase.DONE, Phase.RESTORED, Phase.SKIPPED})
#: The phases in which a decision pass has nothing to do for a replacement
#: (it has not started, or it ended): set lookups, as a pass asks this of
#: every replacement of a 1,000-node pool.
IDLE = TERMINAL | {Phase.PENDING}


class RestoreReason(StrEnum):
    FAILED = "failed"  # this replacement failed a step: counts against the budget
    CANARY = "canary"  # the canary soak found a regression
    ROLLOUT_FAILED = "rollout_failed"  # the budget or the progress deadline ran out
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"  # a signal: retried from scratch on resume


class RolloutStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HALTED = "halted"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"

    @property
    def unfinished(self) -> bool:
        return self in (RolloutStatus.RUNNING, RolloutStatus.HALTED, RolloutStatus.INTERRUPTED)


@dataclass(frozen=True)
class Replacement:
    """The replacement of one old node by one new node."""

    index: int
    batch: int
    old_name: str
    old_target: str
    old_image_id: str
    new_name: str
    phase: Phase = Phase.PENDING
    phase_started: float = 0.0
    attempt: int = 0
    relaunches: int = 0  # new nodes given up on because they failed to boot
    new_target: str = ""
    error: str | None = None
    failure: FailureKind | None = None  # what it failed at, with ``error``
    restore_reason: RestoreReason | None = None
    retries: int = 0
    retry_at: float = 0.0
    drain_timed_out: bool = False
    waiting: str = ""  # what it waits for now, for progress output
    # When each phase was last entered (phase value -> clock time), for the waits.
    entered: Mapping[str, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.phase not in IDLE


@dataclass(frozen=True)
class Counters:
    """A member's cumulative counters at one moment (for the soak comparison)."""

    total: int = 0
    http_5xx: int = 0
    check_downs: int = 0

    @classmethod
    def of(cls, member: Member) -> Counters:
        return cls(member.total_sessions, member.http_5xx, member.check_downs)


@dataclass(frozen=True)
class Soak:
    batch: int
    started: float
    baseline: Mapping[str, Counters] = field(default_factory=dict)  # by LB target


@dataclass(frozen=True)
class Gate:
    """Where the canary batch is in ``canary_steps``, and whether the rollout
    is held at a step boundary (see :mod:`rollout.core.canary`).

    ``weighted`` lists the LB targets this rollout set to a canary weight and
    has not put back yet: journaled before the weight is set, so a resume or
    a reap knows which members to return to their normal weight."""

    step: int = 0  # index of the current step in canary_steps
    step_started: float | None = None  # None: at the boundary before ``step``
    hold: bool = False  # `rollout pause`: hold at the next step boundary
    held_since: float | None = None  # paused since (clock time), None when running
    held_by: str = ""  # why it holds, for status and the live view
    held_total: float = 0.0  # seconds spent paused, left out of the progress deadline
    weighted: tuple[str, ...] = ()

    @property
    def paused(self) -> bool:
        return self.held_since is not None


@dataclass(frozen=True)
class RolloutState:
    """Everything the core needs to decide, and all the journal keeps of a rollout."""

    id: str
    env: str
    role: str
    target: Image
    settings: PoolSettings
    replacements: tuple[Replacement, ...]
    started_at: float
    status: RolloutStatus = RolloutStatus.RUNNING
    finished_at: float | None = None
    last_progress: float = 0.0
    soak: Soak | None = None
    soaked: bool = False  # the canary batch passed its soak
    stopping: bool = False  # a signal asked to stop
    aborting: bool = False
    failing: str | None = None  # why the rollout is failing (restore in flight)
    halted: str | None = None  # why it could not restore
    batches_done: frozenset[int] = frozenset()
    skipped_nodes: tuple[str, ...] = ()  # already on the target image
    previous_images: tuple[str, ...] = ()
    message: str = ""
    # What started it: "rollout", or a workflow ("phoenix", "replace") that
    # replaces chosen nodes on the image they run; phoenix budgets count these.
    kind: str = "rollout"
    # The controller's hooks (before_rollout, after_rollout) that passed; a
    # replacement's own hooks are marked in its ``entered``.
    hooks_done: frozenset[str] = frozenset()
    # strategy blue_green only: which side takes the traffic (rollout.core.bluegreen)
    blue_green: BlueGreen | None = None
    gate: Gate = Gate()  # canary steps and pause gates
    window: Window = field(default_factory=Window)  # post-rollout (rollout.core.window)

    @property
    def strategy(self) -> Strategy:
        return self.settings.strategy

    @property
    def failures(self) -> int:
        return sum(1 for r in self.replacements if r.restore_reason is RestoreReason.FAILED)

    def with_replacement(self, rep: Replacement) -> RolloutState:
        reps = list(self.replacements)
        reps[rep.index] = rep
        return replace(self, replacements=tuple(reps))


@dataclass(frozen=True)
class World:
    """One observation of the pool: what the provider lists, what the LB says, and
    readiness probes of the nodes the core asked about (:func:`wants_probe`)."""

    nodes: Mapping[str, Node]  # by node name
    members: Mapping[str, Member]  # by LB target; empty slots left out
    readiness: Mapping[str, Readiness] = field(default_factory=dict)  # by node name

    @classmethod
    def of(
        cls,
        nodes: list[Node],
        members: list[Member],
        readiness: Mapping[str, Readiness] | None = None,
    ) -> World:
        return cls(
            nodes={n.name: n for n in nodes},
            members={m.target: m for m in members if m.target},
            readiness=dict(readiness or {}),
        )


# --- actions: one bounded driver call each, always idempotent -----------------

#: The index of an action about the rollout as a whole (a controller hook).
ROLLOUT_INDEX = -1


@dataclass(frozen=True)
class Action:
    """One side effect on one node, for replacement ``index`` in ``phase``.

    ``attempt`` and ``phase`` let :func:`apply_outcome` ignore a late outcome
    that no longer matches the replacement.
    """

    index: int
    attempt: int
    phase: Phase
    node: Node

    kind = "action"

    @property
    def replacement(self) -> int | None:
        """The replacement this action is for; None for the rollout as a whole."""
        return None if self.index == ROLLOUT_INDEX else self.index


@dataclass(frozen=True)
class Launch(Action):
    spec: LaunchSpec | None = None
    kind = "launch"


@dataclass(frozen=True)
class RunSmoke(Action):
    image: Image | None = None
    kind = "smoke"


@dataclass(frozen=True)
class AddMember(Action):
    kind = "lb_add"


@dataclass(frozen=True)
class SetAdmin(Action):
    admin: Admin = Admin.READY
    kind = "lb_set_admin"


@dataclass(frozen=True)
class RemoveMember(Action):
    kind = "lb_remove"


@dataclass(frozen=True)
class StopNode(Action):
    kind = "stop"


@dataclass(frozen=True)
class StartNode(Action):
    kind = "start"


@dataclass(frozen=True)
class DestroyNode(Action):
    kind = "destroy"


@dataclass(frozen=True)
class AttachVolume(Action):
    kind = "attach_volume"


@dataclass(frozen=True)
class JoinGroup(Action):
    kind = "join_group"


@dataclass(frozen=True)
class FinishRemoval(Action):
    kind = "finish_removal"


@dataclass(frozen=True)
class RunHook(Action):
    """Run a lifecycle hook (``call``); ``node`` is the node it is about, or a
    stand-in named after the rollout for a hook on the controller."""

    call: HookCall | None = None
    kind = "hook"


@dataclass(frozen=True)
class RunShadow(Action):
    """The dark-launch gate: replay recent requests to the new node and an
    old in-service one (``target``) and compare, before the new node serves."""

    target: ShadowTarget | None = None
    kind = "shadow"


@dataclass(frozen=True)
class SetWeight(Action):
    """The canary's share of traffic: ``weight`` for its new node's member,
    None for its normal weight."""

    weight: int | None = None
    kind = "lb_set_weight"


@dataclass(frozen=True)
class RunAnalysis(Action):
    """Judge the canary batch by analysis ``name`` (``context`` says which
    nodes), taken for the batch's first replacement; it may take minutes.
    ``step``: for an ``analysis:`` canary step, else for the soak; ``point``
    (not None) says it is none of the canary's: around a blue-green switch, or
    in the post-rollout window."""

    name: str = ""
    context: AnalysisContext | None = None
    step: bool = False
    point: AnalysisPoint | None = None
    kind = "analysis"


@dataclass(frozen=True)
class SwitchTraffic(Action):
    """Blue-green: put ``ready`` in service and drain ``drain``, in one LB
    call. Journaled on replacement ``index`` (the first one); not tied to its phase."""

    ready: tuple[Node, ...] = ()
    drain: tuple[Node, ...] = ()
    kind = "lb_switch"


@dataclass(frozen=True)
class StageMember(Action):
    """Blue-green: put the green node in the LB drained, health checks on."""

    kind = "lb_stage"


@dataclass(frozen=True)
class Outcome:
    """What an action returned: ``ok`` and, for a launch, a smoke or an
    analysis, the result."""

    ok: bool
    duration: float = 0.0
    error: str = ""
    node: Node | None = None
    smoke: SmokeResult | None = None
    verdict: Verdict | None = None
    shadow: ShadowVerdict | None = None


@dataclass(frozen=True)
class Wait:
    """An irreducible wait, recorded in the journal for ETAs and the overhead
    ratio. Kinds: boot, smoke, lb_rise, drain, soak."""

    index: int | None
    kind: str
    seconds: float
    at: float


def placeholder(name: str, target: str, state: RolloutState) -> Node:
    """A stand-in for a node the provider no longer lists, so that the LB can
    still be told to drop its member (drivers use ``lb_target`` only)."""
    return Node(
        name=name,
        address="",
        role=state.role,
        env=state.env,
        image_id="",
        image_version="",
        state=NodeState.GONE,
        created_at=0.0,
        target=target,
    )
