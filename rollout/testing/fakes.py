"""Public fakes of every driver, and a fake clock, for tests of the core and of
your own hooks. They run on virtual time: nothing sleeps for real.

    clock = FakeClock()
    provider = FakeProvider(clock, boot_time=1.0)
    provider.seed(4, old_image)
    lb = FakeLoadBalancer(clock, provider)
    lb.seed(provider.list())
    provider.fail("launch", node="web-...")        # the next launch of that name fails
    provider.never_ready(image=new_image.id)        # nodes of that image never get ready
    lb.stuck_sessions(node.lb_target, 3)             # its drain never finishes
    lb.set_error_rate(new_image.id, 0.2)             # 20% of its responses are 5xx
    smoke = FakeSmokeRunner(clock); smoke.fail(image=new_image.id, times=1)  # flake once
    provider.fail("readiness", raises=KeyError)       # a driver bug, not a driver error

Like the real drivers, the fakes never change anything when observed (``list``,
``readiness``, ``members``). ``FakeProvider(setup=(Setup.ATTACH_VOLUME,
Setup.JOIN_GROUP))`` makes every launched node owe those steps (an AWS pool
with data volumes in an ASG), and ``two_step_removal=True`` lists a destroyed
node as REMOVING until ``finish_removal`` (the lab's nspawn nodes).

Health in :class:`FakeLoadBalancer` follows the provider: a member is UP once
its node is ready and ``rise`` checks of ``interval`` seconds have passed.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from rollout.config import PoolSettings, Timeouts
from rollout.errors import DriverError, NotFoundError
from rollout.model import (
    Image,
    Node,
    NodeState,
    Setup,
    SmokeResult,
)
from rollout.protocols import ImageStore
from rollout.testing.clock import FakeClock
from rollout.testing.fake_lb import FakeLoadBalancer
from rollout.testing.fake_provider import FakeProvider
from rollout.testing.rules import FailureRule, take_rule


class FakeSmokeRunner:
    """A smoke gate taking ``duration`` virtual seconds (or ``durations(node
    name)``, for timing runs); fails as injected."""

    def __init__(self, clock: FakeClock, duration: float = 0.5,
                 durations: Callable[[str], float] | None = None) -> None:
        self.clock = clock
        self.duration = duration
        self.durations = durations
        self.runs: list[tuple[str, str, bool]] = []  # (node, image id, passed)
        self._rules: list[FailureRule] = []
        self._lock = threading.Lock()

    def fail(
        self, *, image: str | None = None, node: str | None = None, times: int | None = None,
        summary: str = "1 failed", raise_error: bool = False,
    ) -> None:
        """Fail matching runs (``times`` None: always; 1: a flake). With
        ``raise_error`` the runner raises DriverError instead of reporting."""
        with self._lock:
            op = "raise" if raise_error else "fail"
            self._rules.append(FailureRule(op, times, node, image, summary))

    def run(self, node: Node, image: Image) -> SmokeResult:
        self.clock.sleep(self.duration if self.durations is None else self.durations(node.name))
        with self._lock:
            if take_rule(self._rules, "raise", node.name, image.id) is not None:
                raise DriverError(f"fake smoke: cannot reach {node.name}")
            rule = take_rule(self._rules, "fail", node.name, image.id)
            self.runs.append((node.name, image.id, rule is None))
        if rule is not None:
            return SmokeResult(False, self.duration, rule.error, failures=(rule.error,))
        return SmokeResult(True, self.duration, "5 passed")


class FakeImageStore(ImageStore):
    """Images in memory; :meth:`update_manifest` replaces the stored image."""

    def __init__(self, images: list[Image] | None = None) -> None:
        self.images: list[Image] = list(images or [])

    def add(self, image: Image) -> Image:
        self.images.append(image)
        return image

    def list(self, role: str | None = None) -> list[Image]:
        return [i for i in self.images if role is None or i.role == role]

    def get(self, image_id: str) -> Image:
        for image in self.images:
            if image.id == image_id:
                return image
        raise NotFoundError(f"no image {image_id!r}", hint="list images with `rollout images`")

    def latest(self, role: str) -> Image:
        images = self.list(role)
        if not images:
            raise NotFoundError(f"no image of role {role!r}", hint="bake one with `rollout bake`")
        return max(images, key=lambda i: i.created_at)

    def by_version(self, role: str, version: str) -> Image:
        for image in self.list(role):
            if image.version == version:
                return image
        raise NotFoundError(f"no image of role {role!r} with version {version!r}")

    def update_manifest(
        self, image_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Image:
        old = self.get(image_id)
        manifest = change(copy.deepcopy({"id": old.id, **old.manifest}))
        if manifest.get("id") != old.id:
            raise DriverError(f"fake image store: an update may not change the id of {old.id}")
        new = replace(old, manifest=manifest)
        self.images = [new if i.id == old.id else i for i in self.images]
        return new


def image(role: str = "web", version: str = "1.0.0", created_at: float = 0.0) -> Image:
    """A ready-made image for tests: id ``ROLE-VERSION``."""
    return Image(id=f"{role}-{version}", role=role, version=version, created_at=created_at)


def pool_settings(**overrides: object) -> PoolSettings:
    """Valid settings of a small HAProxy-fronted pool, for tests. Timeout keys
    (ready, smoke, lb_up, drain, progress_deadline) go under ``timeouts``."""
    data: dict[str, object] = {
        "pool_size": 4, "soak": 0, "haproxy": {"backend": "web", "frontend_port": 8080,
                                               "slots": 16},
    }
    timeouts = {k: v for k, v in overrides.items() if k in Timeouts.model_fields}
    data.update({k: v for k, v in overrides.items() if k not in timeouts})
    if timeouts:
        data["timeouts"] = timeouts
    return PoolSettings.model_validate(data)


@dataclass
class FakeWorld:
    """A pool of ``size`` nodes on ``old``, in a fake LB, ready to roll to ``new``."""

    clock: FakeClock
    provider: FakeProvider
    lb: FakeLoadBalancer
    smoke: FakeSmokeRunner
    images: FakeImageStore
    old: Image
    new: Image

    @classmethod
    def create(cls, size: int = 4, *, role: str = "web", boot_time: float = 1.0,
               setup: tuple[Setup, ...] = (), two_step_removal: bool = False,
               **lb_options: Any) -> FakeWorld:
        clock = FakeClock()
        provider = FakeProvider(clock, role=role, boot_time=boot_time, setup=setup,
                                two_step_removal=two_step_removal)
        old, new = image(role, "1.0.0", 1.0), image(role, "2.0.0", 2.0)
        lb = FakeLoadBalancer(clock, provider, **lb_options)
        lb.seed(provider.seed(size, old))
        return cls(clock, provider, lb, FakeSmokeRunner(clock), FakeImageStore([old, new]),
                   old, new)

    def in_service(self) -> int:
        return sum(1 for m in self.lb.members() if m.in_service)

    def problems(self, size: int, image_id: str | None = None) -> list[str]:
        """What differs from a settled pool of ``size`` nodes (all on ``image_id``
        if given, all in service, no other node and no other LB member)."""
        found: list[str] = []
        nodes = self.provider.live()
        members = {m.target: m for m in self.lb.members() if m.target}
        if len(nodes) != size:
            found.append(f"{len(nodes)} nodes exist, expected {size}: "
                         f"{sorted(n.name for n in nodes)}")
        images = {n.image_id for n in nodes}
        if image_id is not None and images != {image_id}:
            found.append(f"images {sorted(images)}, expected {image_id}")
        elif len(images) > 1:
            found.append(f"mixed images {sorted(images)}")
        for node in nodes:
            member = members.pop(node.lb_target, None)
            if node.state is not NodeState.RUNNING:
                found.append(f"{node.name} is {node.state.value}")
            if member is None:
                found.append(f"{node.name} is not in the LB")
            elif not member.in_service:
                found.append(f"{node.name} is {member.admin.value}/{member.health.value}")
        found.extend(f"LB member {t} has no node" for t in members)
        return found


__all__ = [
    "FailureRule",
    "FakeClock",
    "FakeImageStore",
    "FakeLoadBalancer",
    "FakeProvider",
    "FakeSmokeRunner",
    "FakeWorld",
    "image",
    "pool_settings",
    "take_rule",
]
