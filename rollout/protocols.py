"""The small, typed contracts every driver implements.

Drivers live one per module under ``rollout.drivers`` and register through the
``rollout.providers`` / ``rollout.load_balancers`` entry points. Each takes a
typed settings object validated before any I/O. Fakes for all of them live in
``rollout.testing``.

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

from typing import Protocol, runtime_checkable

from rollout.model import (
    Admin,
    Image,
    LaunchSpec,
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


@runtime_checkable
class SmokeRunner(Protocol):
    """Runs the role's smoke suite and HTTP checks directly against one node."""

    def run(self, node: Node, image: Image) -> SmokeResult: ...


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


class Clock(Protocol):
    """Time, passed in so the core and its waits can run on a fake clock."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...
