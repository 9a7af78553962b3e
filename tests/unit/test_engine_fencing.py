"""Fencing end to end on the fakes: controller A holds the pool, freezes past
its lease's TTL, controller B (its own connection to the store) takes the pool
over and acts; when A thaws it stops with FencedOut (exit 3) naming B, and
performs no driver call after B's first step, whether it froze with intents
written but not yet performed or between two steps."""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path

import pytest

from rollout.config import Pool
from rollout.engine.controller import Controller
from rollout.errors import ExitCode, FencedOut
from rollout.events import Event
from rollout.model import Admin, Node
from rollout.store.lease import Lease
from rollout.store.stores import open_store
from rollout.testing import FakeWorld, pool_settings
from rollout.testing.fakes import FakeLoadBalancer, FakeProvider

TTL = 1.0


class RecordingLB(FakeLoadBalancer):
    """The fake LB, recording its changing calls in ``calls`` like the provider."""

    def __init__(self, world: FakeWorld, calls: list[tuple[str, str]]) -> None:
        super().__init__(world.clock, world.provider)
        self.seed(world.provider.live())
        self.calls = calls

    def add(self, node: Node):  # type: ignore[no-untyped-def]
        self.calls.append(("lb_add", node.name))
        return super().add(node)

    def set_admin(self, node: Node, admin: Admin) -> None:
        self.calls.append(("lb_set_admin", node.name))
        super().set_admin(node, admin)

    def remove(self, node: Node) -> None:
        self.calls.append(("lb_remove", node.name))
        super().remove(node)


def _driver_calls(provider: FakeProvider, lb: RecordingLB) -> int:
    return len(provider.calls) + len(lb.calls)


@pytest.mark.parametrize("freeze_at", ["step_started", "step_finished"])
def test_a_thawed_holder_is_refused_before_any_driver_call(
        store_url: str, tmp_path: Path, freeze_at: str) -> None:
    world = FakeWorld.create(2)
    lb = RecordingLB(world, [])
    store_a, store_b = open_store(store_url, durable=False), open_store(store_url, durable=False)
    lease_a = Lease(store_a, "lab/web", ttl=TTL, heartbeat=False, host="host-a", pid=1001)
    lease_b = Lease(store_b, "lab/web", ttl=60, heartbeat=False, host="host-b", pid=2002)
    seen: dict[str, int] = {}

    def freeze_then_take_over(event: Event) -> None:
        if event.kind != freeze_at or seen:
            return
        time.sleep(TTL + 0.3)  # A is frozen: no renewal, the lease expires
        lease_b.acquire()
        rollout = store_b.unfinished("lab", "web")
        assert rollout is not None
        store_b.begin_step(rollout.id, 0, "lb_set_admin", "web-1", world.clock.now(), "maint")
        seen["calls"] = _driver_calls(world.provider, lb)
        seen["b_epoch"] = lease_b.epoch

    pool = Pool("lab", "web", pool_settings(pool_size=2, soak=0), tmp_path / "web.yml")
    with closing(store_a), closing(store_b):
        lease_a.acquire()
        ctl = Controller(pool=pool, provider=world.provider, lb=lb, smoke=world.smoke,
                         journal=store_a, clock=world.clock, on_event=freeze_then_take_over,
                         workers=0, lease=lease_a)
        with pytest.raises(FencedOut, match=r"lost its lease.*host-b") as err:
            ctl.run(world.new)
        assert err.value.exit_code is ExitCode.LOCKED
        assert seen, "the takeover never happened"
        assert _driver_calls(world.provider, lb) == seen["calls"]
        # The journal: nothing of A's epoch after B's first step.
        rollout = store_b.unfinished("lab", "web")
        assert rollout is not None
        steps = store_b.steps(rollout.id)
        b_first = min(s.id for s in steps if s.epoch == seen["b_epoch"])
        assert [s for s in steps if s.id > b_first and s.epoch != seen["b_epoch"]] == []
        assert all(s.epoch in (lease_a.epoch, seen["b_epoch"]) for s in steps)
