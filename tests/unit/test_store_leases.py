"""Fenced leases on both engines: epochs, takeover, the fence on journal writes,
local loss at TTL minus the margin, forced release and what status shows."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from rollout.core.batches import Plan
from rollout.core.decide import new_state
from rollout.core.state import RolloutState, RolloutStatus
from rollout.errors import ExitCode, FencedOut, LockHeldError
from rollout.events import LeaseForceReleased
from rollout.store.journal import Journal
from rollout.store.lease import Lease
from rollout.store.stores import open_store
from rollout.testing import FakeWorld, pool_settings

TTL = 1.0  # real seconds: on PostgreSQL expiry is the server's clock


def _state(rollout_id: str = "r00000001") -> RolloutState:
    world = FakeWorld.create(2)
    plan = Plan(batches=((world.provider.live()[0],), (world.provider.live()[1],)),
                skipped=(), canary=True)
    return new_state(rollout_id, "lab", "web", world.new, pool_settings(pool_size=2), plan,
                     time.time())


def _lease(store: Journal, host: str, ttl: float = TTL) -> Lease:
    # Another host: a live holder elsewhere is only taken over once expired.
    return Lease(store, "lab/web", ttl=ttl, heartbeat=False, host=host, pid=1000)


def test_a_frozen_holder_is_fenced_out_after_a_takeover(store_url: str) -> None:
    """A holds the pool and writes; A freezes (stops renewing) past the TTL; B
    (another controller, its own connection) takes over and writes. A's next
    intent is refused naming B, A's late outcome too, and nothing of A's
    epoch lands after B's first write."""
    store_a, store_b = open_store(store_url), open_store(store_url)
    a = _lease(store_a, "host-a").acquire()
    state = _state()
    store_a.create(state, pid=1, host="host-a")
    first = store_a.begin_step(state.id, 0, "launch", "web-new-0", 1.0)
    store_a.finish_step(first, True, "", 2.0, 1.0)
    in_flight = store_a.begin_step(state.id, 0, "lb_add", "web-new-0", 3.0)

    time.sleep(TTL + 0.2)  # A is frozen: no renewal
    b = _lease(store_b, "host-b").acquire()
    assert b.epoch == a.epoch + 1
    store_b.get(state.id)  # B reconciles from the journal, then acts
    b_first = store_b.begin_step(state.id, 0, "lb_remove", "web-new-0", 4.0)

    with pytest.raises(FencedOut, match=r"lab/web.*lost its lease.*host-b") as err:
        store_a.begin_steps(state.id, [(1, "launch", "web-new-1", 5.0, "")])
    assert err.value.exit_code is ExitCode.LOCKED and isinstance(err.value, LockHeldError)
    with pytest.raises(FencedOut):
        store_a.finish_step(in_flight, True, "", 5.0, 2.0)
    with pytest.raises(FencedOut):
        store_a.save(replace(state, status=RolloutStatus.HALTED, finished_at=6.0))
    assert a.renew() is False and a.lost

    steps = store_b.steps(state.id)
    assert [s.epoch for s in steps] == [a.epoch, a.epoch, b.epoch]
    assert not [s for s in steps if s.id > b_first and s.epoch == a.epoch]
    assert [s.ok for s in steps] == [True, None, None]  # A's late outcome never landed
    assert store_b.get(state.id).status is RolloutStatus.RUNNING
    b.release()


def test_epochs_only_increase_across_releases(store_url: str) -> None:
    store = open_store(store_url)
    epochs = []
    for _ in range(3):
        lease = _lease(store, "h").acquire()
        epochs.append(lease.epoch)
        lease.release()
        assert lease.current() is None
    assert epochs == sorted(set(epochs)) and epochs[0] >= 1


def test_a_live_holder_is_refused_and_named_until_it_expires(store_url: str) -> None:
    store = open_store(store_url)
    a = _lease(store, "host-a").acquire()
    with pytest.raises(LockHeldError, match=r"locked by host-a:1000:.*epoch 1\)"):
        _lease(store, "host-b").acquire()
    assert a.renew() and not a.lost
    time.sleep(TTL + 0.2)
    _lease(store, "host-b").acquire()


def test_lost_locally_at_ttl_minus_margin_refuses_intents(store_url: str) -> None:
    """Nobody took over, but A has not renewed for TTL minus the margin: A's
    lease counts as lost and A's intents are refused before any side effect."""
    store = open_store(store_url)
    now = [0.0]
    a = Lease(store, "lab/web", ttl=30.0, heartbeat=False, monotonic=lambda: now[0])
    a.acquire()
    state = _state()
    store.create(state)
    now[0] = 19.9  # TTL 30 s, margin 10 s
    assert not a.lost
    store.begin_step(state.id, 0, "launch", "web-new-0", 1.0)
    now[0] = 20.0
    assert a.lost
    with pytest.raises(FencedOut,
                       match=r"lost its lease \(epoch \d+\): it was not renewed in time"):
        store.begin_step(state.id, 0, "lb_add", "web-new-0", 2.0)
    assert a.renew() and not a.lost  # still ours in the store: renewing recovers it
    a.release()


def test_force_release_fences_the_holder_and_is_journaled(store_url: str) -> None:
    store, operator = open_store(store_url), open_store(store_url)
    a = _lease(store, "host-a", ttl=300.0).acquire()
    state = _state()
    store.create(state)
    old = operator.force_release("lab/web", by="alice")
    assert old is not None and old.holder == a.holder and old.epoch == a.epoch
    assert operator.force_release("lab/web", by="alice") is None  # already free
    with pytest.raises(FencedOut, match="released"):
        store.begin_step(state.id, 0, "launch", "web-new-0", 1.0)
    [event] = operator.events(None)
    assert isinstance(event, LeaseForceReleased)
    assert (event.key, event.by, event.holder, event.epoch) == ("lab/web", "alice", a.holder,
                                                                a.epoch + 1)
    taker = _lease(operator, "host-b").acquire()  # free at once, at a newer epoch
    assert taker.epoch == a.epoch + 2


def test_lease_status_shows_holder_host_pid_epoch_and_expiry(store_url: str) -> None:
    store = open_store(store_url)
    assert store.lease_status("lab/web") is None
    lease = Lease(store, "lab/web", ttl=30.0, heartbeat=False, host="ci-7", pid=4242).acquire()
    status = store.lease_status("lab/web")
    assert status is not None
    assert (status.holder, status.host, status.pid, status.epoch) == (lease.holder, "ci-7",
                                                                      4242, lease.epoch)
    assert 28.0 < status.expires_in <= 30.0 and not status.expired
    assert status.expires_at - status.acquired_at == pytest.approx(30.0)
    lease.release()
    assert store.lease_status("lab/web") is None


def test_heartbeat_keeps_the_lease(store_url: str) -> None:
    store = open_store(store_url)
    with Lease(store, "lab/web", ttl=1.2) as lease:
        first = store.lease_status("lab/web")
        time.sleep(1.5)  # past the TTL: only the heartbeat (every TTL/4) keeps it
        later = store.lease_status("lab/web")
        assert first is not None and later is not None and not later.expired
        assert later.expires_at > first.expires_at and not lease.lost
