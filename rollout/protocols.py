"""The small, typed contracts every driver implements, and the backend that
hands them out for a pool.

A :class:`Backend` (one per provider kind: ``lab``, ``aws``) is registered
through the ``rollout.backends`` entry point group (:mod:`rollout.backends`
keeps the table) and returns a pool's Provider, LoadBalancer, ImageStore and
SmokeRunner. Each driver takes a typed settings object validated before any
I/O. Fakes for all of them live in ``rollout.testing``.

Optional capabilities are methods with a default here, never attributes a
caller probes for: a driver class inherits the default by subclassing the
protocol explicitly (``class AwsProvider(Provider)``).

Every call here is a single, bounded operation: waiting is the decision core's
job, done by polling these methods against an injected clock, so that a crash
at any point leaves a world that the next run can observe and reconcile.

Observation never changes the world: ``Provider.list``, ``Provider.readiness``
and ``LoadBalancer.members`` only read. Whatever a node still needs (its data
volume attached, its group membership, the end of a removal) is reported by
them and done by the core through an explicit, journaled method. Those methods
have defaults that do nothing, for providers that never ask for them; a driver
subclasses the protocol to inherit them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from rollout.config import Pool
from rollout.core.analysis import AnalysisContext, Verdict
from rollout.core.shadow import Request, ShadowTarget, ShadowVerdict
from rollout.errors import ConfigError
from rollout.hooks import HookCall
from rollout.model import (
    Admin,
    BakeRequest,
    Image,
    LaunchSpec,
    LbCapacity,
    Member,
    Node,
    Readiness,
    SmokeResult,
    SshTarget,
)


@runtime_checkable
class Provider(Protocol):
    """Starts and stops the machines of one pool (role in an environment)."""

    def list(self) -> list[Node]:
        """Every node of the pool that exists, including stopped and booting
        ones, nodes that a rollout created but did not finish with, and nodes
        whose removal is unfinished (``NodeState.REMOVING``). Read-only."""
        ...

    def launch(self, spec: LaunchSpec) -> Node:
        """Start a node from ``spec.image``. Returns at once, the node booting.
        Idempotent on ``spec.name``: launching a name that exists returns it."""
        ...

    def readiness(self, node: Node) -> Readiness:
        """Probe once, without waiting: is ssh up, systemd running, HTTP answering?
        Read-only: a step the node still needs is named in ``Readiness.setup``."""
        ...

    def stop(self, node: Node) -> None:
        """Stop the machine but keep it restorable with :meth:`start`."""
        ...

    def start(self, node: Node) -> Node:
        """Start a stopped node again, with the same name, address and image."""
        ...

    def destroy(self, node: Node) -> None:
        """Remove the node for good. Idempotent: a gone node is not an error.
        May return once the node is going away: it is then listed as
        ``REMOVING`` until :meth:`finish_removal` has released what it holds."""
        ...

    def ssh(self, node: Node) -> SshTarget:
        """How to reach the node over SSH (for the smoke gate, bakes, forensics)."""
        ...

    def attach_volume(self, node: Node) -> None:
        """Attach the node's data volume (readiness said ``Setup.ATTACH_VOLUME``).
        Idempotent and bounded. The default: this provider has no volumes."""
        return None

    def join_group(self, node: Node) -> None:
        """Make the node an in-service member of its group (readiness said
        ``Setup.JOIN_GROUP``). Idempotent. The default: there is no group."""
        return None

    def finish_removal(self, node: Node) -> None:
        """Finish removing a node listed as ``REMOVING``: wait, bounded, until
        its machine is gone and release what it held. Idempotent. The default:
        this provider's destroy finishes on its own."""
        return None

    def orphans(self) -> dict[str, str]:
        """Machines of this provider's backend that still run (or hold
        resources) but have no record, so :meth:`list` cannot show them:
        name -> what is left of it. Read-only. The default: there are none."""
        return {}

    def remove_orphan(self, name: str) -> None:
        """Kill and remove what :meth:`orphans` reported for ``name``; bounded
        and idempotent. The default does nothing."""
        return None

    def on_rollout_succeeded(self, image: Image) -> None:
        """After a rollout (or phoenix run, or replacement) of the pool succeeded
        and replaced nodes with ``image``, still under the pool's lease: leave
        whatever launches new nodes outside rollout (an ASG's launch template)
        pointing at it. The default does nothing."""
        return None


@runtime_checkable
class LoadBalancer(Protocol):
    """The members of one pool's backend or target group."""

    def members(self) -> list[Member]:
        """All members, with admin state, health and counters. For HAProxy this
        includes empty slots (``target == ""``)."""
        ...

    def add(self, node: Node) -> Member:
        """Put ``node`` in the pool with admin READY and health checks on.
        Idempotent: adding a node that is already a member returns it."""
        ...

    def set_admin(self, node: Node, admin: Admin) -> None:
        """READY puts it in service, DRAIN stops new sessions, MAINT takes it out."""
        ...

    def remove(self, node: Node) -> None:
        """Take the node out of the pool entirely (MAINT first, then free the
        slot or deregister). Idempotent."""
        ...

    def stage(self, node: Node) -> Member:
        """Blue-green: put ``node`` in the pool drained (DRAIN, health checks
        on), so that it is checked but takes no traffic until :meth:`switch`.
        Idempotent. A load balancer that cannot stage raises ``ConfigError``."""
        ...

    def switch(self, ready: Sequence[Node], drain: Sequence[Node]) -> None:
        """Blue-green: put every ``ready`` member in service and drain every
        ``drain`` member, as close to at once as the LB allows (one call), the
        ready ones first so that the pool is never empty. Idempotent."""
        ...

    def set_weight(self, node: Node, weight: int | None) -> None:
        """Give the node's member ``weight`` (its share of traffic is its weight
        over the sum of the weights in service); None puts its normal weight
        back. Idempotent. Only for load balancers whose members report a
        ``Member.weight``; the core never asks the others."""
        raise ConfigError(
            f"the load balancer {type(self).__name__} cannot weight its members (node "
            f"{node.name})",
            hint="remove the weight steps from canary_steps for this pool",
        )

    def capacity(self) -> LbCapacity | None:
        """How many members the pool's backend can hold at once, and the
        setting that raises it; None when it has no practical bound. ``plan``
        and ``run`` refuse a plan whose peak exceeds it."""
        return None


@runtime_checkable
class SmokeRunner(Protocol):
    """Runs the role's smoke suite and HTTP checks directly against one node."""

    def run(self, node: Node, image: Image) -> SmokeResult: ...


@runtime_checkable
class HookRunner(Protocol):
    """Runs the pool's lifecycle hooks (playbooks) at the rollout's points."""

    def run(self, call: HookCall) -> None:
        """Run one hook to its end, within ``call.hook.timeout``. Raises
        :class:`~rollout.errors.HookFailed` when it fails or times out."""
        ...


@runtime_checkable
class ImageStore(Protocol):
    """Where baked images are registered and found."""

    def list(self, role: str | None = None) -> list[Image]: ...

    def get(self, image_id: str) -> Image:
        """Raise ``NotFoundError`` naming the id when it is unknown."""
        ...

    def latest(self, role: str) -> Image:
        """The newest image of ``role``; ``NotFoundError`` when there is none."""
        ...

    def by_version(self, role: str, version: str) -> Image: ...

    def update_manifest(
        self, image_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Image:
        """Replace the image's manifest with ``change(copy of the manifest)``,
        atomically, and return the updated image. This is how promotions and
        rollout evidence are kept (:mod:`rollout.core.promotion`). The default
        refuses: a store that cannot record them cannot gate promotions either."""
        raise ConfigError(
            f"the image store {type(self).__name__} cannot record promotions or evidence "
            f"(image {image_id})",
            hint="use an image store that implements update_manifest",
        )


class Clock(Protocol):
    """Time, passed in so the core and its waits can run on a fake clock."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class Analyzer(Protocol):
    """Runs the pool's named analyses (``rollout.analyses``): the one call the
    engine makes to judge a canary by its metrics."""

    def analyze(self, name: str, context: AnalysisContext) -> Verdict:
        """Measure analysis ``name`` for ``context`` until its verdict is clear.
        Raises NotFoundError for an unknown name, ConfigError for an unusable
        definition; a provider that cannot be read gives inconclusive readings."""
        ...


class RequestSource(Protocol):
    """The pool's recent real requests, recorded while it is open (the
    dark-launch gate replays a sample of them). Opening binds whatever the
    LB sends its log to; nothing is recorded before, nor after closing."""

    def open(self) -> None: ...

    def recent(self) -> tuple[Request, ...]:
        """The requests recorded so far, oldest first (a bounded number)."""
        ...

    def close(self) -> None: ...


class ShadowReplayer(Protocol):
    """Runs the pool's dark-launch gate (``rollout.shadow``)."""

    def replay(self, target: ShadowTarget) -> ShadowVerdict:
        """Replay a sample of the recorded requests to ``target``'s new and old
        node, and judge the answers. A node that does not answer is a
        mismatch, not an exception."""
        ...


@runtime_checkable
class Builder(Protocol):
    """Boots a writable machine for ONE bake and turns it into a registered image.

    ``rollout.bake.pipeline.bake`` calls, in order: :meth:`check`, :meth:`start`,
    (the playbook and the smoke gate over :meth:`ssh`), :meth:`capture`,
    :meth:`register`, and :meth:`discard` in ``finally`` whatever happened. A
    builder object serves one bake and remembers what it made, so ``discard``
    knows what to remove. ``playbook_timeout`` bounds the Ansible play.
    """

    playbook_timeout: float

    def check(self, request: BakeRequest) -> str:
        """Validate what only this backend knows (the parent image, the base,
        root, programs) with no side effect; return the id of the base the
        image starts from (for the manifest's ``base``)."""
        ...

    def start(self, request: BakeRequest, cancel: Callable[[], bool]) -> Node:
        """Boot the builder from the parent image (or the base) and return once
        it answers SSH. Waits poll ``cancel`` and raise ``Interrupted`` when set."""
        ...

    def ssh(self, node: Node) -> SshTarget:
        """How Ansible and the smoke gate reach the builder."""
        ...

    def capture(self, node: Node, image: Image) -> Image:
        """Stop the builder and turn its disk into ``image`` (its manifest
        complete), not yet registered; the returned image has its location."""
        ...

    def register(self, image: Image) -> Image:
        """Make the captured image visible to the image store, atomically: from
        here on it counts as baked, and ``discard`` leaves it alone."""
        ...

    def discard(self) -> list[str]:
        """Remove the builder and whatever was captured but not registered.
        Idempotent and safe after any step (or none); returns what it could not
        remove (the bake is already failing, or done), never raises for it."""
        ...


@runtime_checkable
class Backend(Protocol):
    """One provider kind (``lab``, ``aws``): the drivers of the pools that name
    it in ``provider:``. Built once per workspace; every method but
    :meth:`validate` creates drivers, and none of them does I/O."""

    def validate(self, pool: Pool) -> None:
        """Refuse settings this backend cannot serve (a missing ``aws`` key, a
        load balancer it has no driver for) with a ConfigError naming the
        pool's file and the key. Runs when the workspace opens."""
        ...

    def image_store(self, pool: Pool | None) -> ImageStore:
        """Where the images of ``pool`` live; ``None``: the backend's store for
        an environment without a pool that says more."""
        ...

    def provider(self, pool: Pool, images: ImageStore) -> Provider: ...

    def load_balancer(self, pool: Pool) -> LoadBalancer:
        """The driver that ``load_balancer:`` selects, as this backend serves it."""
        ...

    def smoke_runner(self, pool: Pool, provider: Provider) -> SmokeRunner: ...

    def prometheus_url(self, pool: Pool) -> str | None:
        """The Prometheus the backend runs for ``pool`` (the default address of
        its ``prometheus`` analyses), or None when it runs none."""
        ...

    def preview_url(self, pool: Pool) -> str | None:
        """The base URL of ``pool``'s preview frontend (``blue_green.preview``:
        the idle side), for the ``$preview`` placeholder of its analyses; None
        when it has none."""
        return None

    def request_source(self, pool: Pool) -> RequestSource | None:
        """Where ``pool``'s recent requests come from, for its dark-launch gate;
        None when ``rollout.shadow`` is off (``validate`` refuses the gate on a
        backend that cannot record requests)."""
        return None

    def builder(self, pool: Pool | None, *, clock: Clock,
                on_event: Callable[[str], None]) -> Builder:
        """A builder for ONE bake of ``pool``'s role (``None``: a role this
        environment has no pool for yet, where the backend can serve it)."""
        ...
