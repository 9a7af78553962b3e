"""Weighted canary steps on ELBv2, through the controller, on moto's server:
the canary moves to the pool's second (idle) target group, and the
listener's weighted forward gives that group the step's share.

Real: EC2, ELBv2 registrations and the listener's ForwardConfig (moto).
Scripted, as in test_aws_bluegreen: target health and the deregistration
delay (ScriptedTargetHealth on the controller's FakeClock), readiness and
the smoke gate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.core.state import RolloutStatus
from rollout.errors import RolloutFailed
from rollout.events import CanaryStepStarted, Event
from tests.aws.moto_harness import AwsWorld, build_world, seed_plain_pool, with_listener
from tests.aws.test_aws_bluegreen import Crash, Rig

pytestmark = pytest.mark.aws

STEPS = [{"weight": 10}, {"pause": 30}]


@pytest.fixture
def pair_world(aws_env: object) -> AwsWorld:
    world = with_listener(build_world(deregistration_delay=5))
    seed_plain_pool(world, 2)
    return world


def canary(tmp_path: Path, world: AwsWorld, rig: Rig | None = None) -> Rig:
    shared = {"clock": rig.clock, "health": rig.health} if rig else {}
    made = Rig(world, tmp_path, canary=1, canary_steps=STEPS, **shared)  # type: ignore[arg-type]
    made.lb.clock = made.clock  # a weight step polls ELBv2's check on the test's clock
    return made


def normal(world: AwsWorld) -> dict[str, int]:
    return {world.target_group_arn: 1, world.alternate_arn: 0}


def at_pause(rig: Rig, seen: dict[str, object], crash: bool = False) -> None:
    def hook(event: Event) -> None:
        rig.events.append(event)
        if isinstance(event, CanaryStepStarted) and event.step == 1:
            seen.update(forward=rig.world.forward(),
                        canary=rig.world.registered(rig.world.alternate_arn),
                        serving=rig.world.registered())
            if crash:
                raise Crash("killed during the canary pause")

    rig.controller.on_event = hook


def test_a_weight_step_forwards_its_share_to_the_canary_group(
        pair_world: AwsWorld, tmp_path: Path) -> None:
    world = pair_world
    old = world.registered()
    rig = canary(tmp_path, world)
    rig.clock.advance(10.0)
    seen: dict[str, object] = {}
    at_pause(rig, seen)

    result = rig.controller.run(world.new)

    assert result.status is RolloutStatus.SUCCEEDED
    # During the pause: one canary (new image) alone in the idle group; the
    # serving group keeps one old node (the other is parked): 100 : 11 is
    # 9.9 % for the canary.
    assert seen["forward"] == {world.target_group_arn: 100, world.alternate_arn: 11}
    assert isinstance(seen["canary"], set) and len(seen["canary"]) == 1
    assert rig.images(seen["canary"]) == {world.new.id}
    assert not seen["canary"] & seen["serving"]  # type: ignore[operator]
    # After: all traffic to the serving group, which holds the new pool.
    assert world.forward() == normal(world)
    assert world.registered(world.alternate_arn) == set()
    assert rig.images(world.registered()) == {world.new.id} and not world.registered() & old


def test_a_failed_canary_puts_the_listener_back(pair_world: AwsWorld, tmp_path: Path) -> None:
    world = pair_world
    old = world.registered()
    rig = canary(tmp_path, world)
    rig.clock.advance(10.0)
    seen: dict[str, object] = {}

    def hook(event: Event) -> None:
        rig.events.append(event)
        if isinstance(event, CanaryStepStarted) and event.step == 1:
            seen.update(forward=world.forward())
            rig.health.unhealthy |= world.registered(world.alternate_arn)

    rig.controller.on_event = hook
    with pytest.raises(RolloutFailed, match="canary regression"):
        rig.controller.run(world.new)

    assert seen["forward"] == {world.target_group_arn: 100, world.alternate_arn: 11}
    assert world.forward() == normal(world)
    assert world.registered(world.alternate_arn) == set()
    assert world.registered() == old and rig.in_service() == old


def test_abort_after_a_kill_in_the_pause_puts_the_listener_back(
        pair_world: AwsWorld, tmp_path: Path) -> None:
    world = pair_world
    old = world.registered()
    rig = canary(tmp_path, world)
    rig.clock.advance(10.0)
    seen: dict[str, object] = {}
    at_pause(rig, seen, crash=True)
    with pytest.raises(Crash):
        rig.controller.run(world.new)
    assert world.forward() == {world.target_group_arn: 100, world.alternate_arn: 11}

    result = canary(tmp_path, world, rig).controller.abort()

    assert result.status is RolloutStatus.ABORTED
    assert world.forward() == normal(world)
    assert world.registered(world.alternate_arn) == set()
    assert world.registered() == old


def test_resume_after_a_kill_in_the_pause_ends_with_normal_weights(
        pair_world: AwsWorld, tmp_path: Path) -> None:
    world = pair_world
    rig = canary(tmp_path, world)
    rig.clock.advance(10.0)
    seen: dict[str, object] = {}
    at_pause(rig, seen, crash=True)
    with pytest.raises(Crash):
        rig.controller.run(world.new)
    assert world.forward() == {world.target_group_arn: 100, world.alternate_arn: 11}

    result = canary(tmp_path, world, rig).controller.resume()

    assert result.status is RolloutStatus.SUCCEEDED
    assert world.forward() == normal(world)
    assert world.registered(world.alternate_arn) == set()
    assert rig.images(world.registered()) == {world.new.id}
