"""rollout.testing.latency and the fakes' timing hooks: seeded lognormal draws
with stragglers, and throttling that ends in the AWS driver's TransientError,
which the controller retries (observation: next pass; action: core backoff)."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from rollout.config import Pool
from rollout.engine.controller import Controller
from rollout.errors import TransientError
from rollout.model import Admin, LaunchSpec
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings
from rollout.testing.latency import Latencies, Lognormal, Pacer, Throttle


def test_draws_are_seeded_per_node_and_lognormal_with_stragglers() -> None:
    model = {"boot": Lognormal(1.0, 0.3, stragglers=0.05, slow=10.0)}
    a, b = Latencies(model, seed=7), Latencies(model, seed=7)
    names = [f"n{i}" for i in range(2000)]
    first = [a.draw("boot", n) for n in names]
    # Another order of asking gives every node the same value.
    assert [b.draw("boot", n) for n in reversed(names)][::-1] == first
    assert a.last("boot", "n3") == first[3]
    assert 0.9 < statistics.median(first) < 1.1
    slow = sum(1 for x in first if x > 4.0)
    assert 50 < slow < 150  # about 5% stragglers, 10x slower
    assert Latencies(model, seed=8).draw("boot", "n0") != first[0]
    assert a.draw("smoke", "n0") == 0.0  # no model: no time


def test_a_throttled_call_retries_with_backoff_then_raises_the_aws_drivers_error() -> None:
    slept: list[float] = []
    always = Throttle(1.0, seed=1, max_attempts=3)
    with pytest.raises(TransientError, match="AWS throttled the request") as caught:
        always.call("RegisterTargets", "web-1", slept.append)
    assert caught.value.hint and "retry_mode" in caught.value.hint
    assert always.attempts == 3 and always.raised == 1 and len(slept) == 2
    assert 0 <= slept[0] <= 1.0 and 0 <= slept[1] <= 2.0  # botocore: rand x 1 s x 2^i
    never = Throttle(0.0, seed=1)
    never.call("RegisterTargets", "web-1", slept.append)
    assert never.attempts == 1 and never.raised == 0


def _controller(world: FakeWorld, tmp_path: Path) -> Controller:
    journal = Journal(tmp_path / "j.sqlite", durable=False)
    pool = Pool("lab", "web", pool_settings(), tmp_path / "web.yml")
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=journal, clock=world.clock, workers=0)


def test_throttled_api_attempts_cost_backoff_and_the_rollout_converges(tmp_path: Path) -> None:
    """20% of every API attempt is throttled; the AWS stack's retries absorb
    them (an observation that fails for good is tried on the next pass) at the
    cost of their backoff."""
    world = FakeWorld.create(4)
    throttle = Throttle(0.2, seed=3, max_attempts=5)
    pace = Pacer(Latencies({}, seed=1), world.clock.sleep, throttle)
    world.provider.pace = world.lb.pace = pace
    start = world.clock.now()
    result = _controller(world, tmp_path).run(world.new)
    assert throttle.throttled > 10
    assert str(result.status) == "succeeded"
    assert world.problems(4, world.new.id) == []
    assert world.clock.now() - start >= throttle.backoff > 0


def test_a_call_throttled_for_good_while_retiring_is_retried_by_the_core(
        tmp_path: Path) -> None:
    """Half the removals of old members fail for good (one attempt): the
    TransientError reaches the core, which retries with its backoff."""
    world = FakeWorld.create(4)
    throttle = Throttle(0.5, seed=5, max_attempts=1)
    pace = Pacer(Latencies({}, seed=1), world.clock.sleep, throttle,
                 throttled_ops=frozenset({"remove"}))
    world.lb.pace = pace
    ctl = _controller(world, tmp_path)
    result = ctl.run(world.new)
    assert throttle.raised > 0
    assert str(result.status) == "succeeded"
    assert world.problems(4, world.new.id) == []
    retried = [s for s in ctl.journal.steps(result.id) if s.kind == "lb_remove" and not s.ok]
    assert len(retried) == throttle.raised
    assert all("AWS throttled the request" in (s.error or "") for s in retried)


def test_boot_drain_registration_and_smoke_take_their_drawn_times() -> None:
    world = FakeWorld.create(1, boot_time=99.0, registration_delay=3.0, rise=1,
                             interval=1.0, drain=lambda name: 5.0)
    world.provider.boot = lambda name: 2.0
    world.smoke.durations = lambda name: 4.0
    node = world.provider.launch(LaunchSpec(name="web-new", image=world.new, role="web",
                                            env="lab", rollout_id="r1"))
    world.clock.advance(2.0)
    assert world.provider.is_ready("web-new")
    world.lb.add(world.provider.list()[-1])
    world.clock.advance(3.5)  # registration 3 s + 1 check of 1 s not yet passed
    member = {m.target: m for m in world.lb.members()}[node.lb_target]
    assert not member.in_service
    world.clock.advance(0.6)
    member = {m.target: m for m in world.lb.members()}[node.lb_target]
    assert member.in_service
    start = world.clock.now()
    world.smoke.run(node, world.new)
    assert world.clock.now() - start == 4.0
    old = world.provider.live()[0]
    world.lb.set_admin(old, Admin.DRAIN)
    world.clock.advance(4.9)
    assert {m.target: m for m in world.lb.members()}[old.lb_target].sessions > 0
    world.clock.advance(0.2)
    assert {m.target: m for m in world.lb.members()}[old.lb_target].sessions == 0
