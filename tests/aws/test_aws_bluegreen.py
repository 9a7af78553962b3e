"""Blue-green on ELBv2, through the controller, on
moto's server: two target groups behind one listener whose default action
is the switch.

Real: EC2, ELBv2 registrations, the listener and its weighted forward (moto).
Scripted, because moto cannot: target health and the deregistration delay
(ScriptedTargetHealth, per target group, on the controller's FakeClock),
readiness over the network and the smoke gate, as in test_aws_rollout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollout.backends.aws.elbv2 import Elbv2LoadBalancer, describe_target_health
from rollout.backends.aws.provider import AwsProvider
from rollout.config import Pool, PoolSettings
from rollout.core.state import RolloutStatus
from rollout.engine.controller import Controller
from rollout.events import Event, SideChosen, StepStarted, TrafficSwitched
from rollout.model import Admin
from rollout.store.journal import Journal
from rollout.testing import FakeClock, FakeSmokeRunner
from tests.aws.moto_harness import (
    AwsWorld,
    ScriptedTargetHealth,
    build_world,
    seed_plain_pool,
    with_listener,
)

pytestmark = pytest.mark.aws

DELAY = 60.0  # scale_down_delay


class Crash(BaseException):
    """A SIGKILL of the controller, at a chosen point."""


class Rig:
    """A controller over the AWS drivers with a blue-green pool."""

    def __init__(self, world: AwsWorld, tmp_path: Path, clock: FakeClock | None = None,
                 lb: Any = None, health: ScriptedTargetHealth | None = None,
                 preview: bool = False, **settings: Any) -> None:
        self.world = world
        self.clock = clock or FakeClock()
        # A restarted controller shares ELBv2's view of target health (the
        # script's registration times) with the one it replaces.
        self.health = health or ScriptedTargetHealth(
            describe_target_health(world.clients), self.clock, world.clients, rise=3.0
        )
        self.provider: AwsProvider = world.provider()
        self.lb: Elbv2LoadBalancer = world.lb(self.health, preview=preview)
        self.events: list[Event] = []
        base = world.pool()
        pool = Pool(base.env, base.role, PoolSettings.model_validate(
            {**base.settings.model_dump(exclude_unset=True), **settings}), base.source)
        self.controller = Controller(
            pool=pool, provider=self.provider, lb=lb(self.lb) if lb else self.lb,
            smoke=FakeSmokeRunner(self.clock),
            journal=Journal(tmp_path / "journal.sqlite", durable=False),
            clock=self.clock, poll_interval=1.0, workers=0, on_event=self.events.append,
        )

    def images(self, targets: set[str]) -> set[str]:
        by_target = {n.target: n.image_id for n in self.provider.list()}
        return {by_target.get(t, "?") for t in targets}

    def in_service(self) -> set[str]:
        return {m.target for m in self.lb.members() if m.in_service}

    def killed_after_switch(self, image: Any) -> None:
        """Run to ``image`` and kill the controller the moment the traffic
        switched, blue still warm."""
        def kill(event: Event) -> None:
            if isinstance(event, TrafficSwitched):
                raise Crash("killed while blue is warm")

        self.controller.on_event = kill
        with pytest.raises(Crash):
            self.controller.run(image)


def bluegreen(tmp_path: Path, world: AwsWorld, **kw: Any) -> Rig:
    return Rig(world, tmp_path, strategy="blue_green", scale_down_delay=DELAY, **kw)


@pytest.fixture
def pair_world(aws_env: object) -> AwsWorld:
    world = with_listener(build_world(deregistration_delay=5))
    seed_plain_pool(world, 2)
    return world


def test_blue_green_switches_the_listener_to_the_green_group(
        pair_world: AwsWorld, tmp_path: Path) -> None:
    world = pair_world
    blue = world.registered()
    rig = bluegreen(tmp_path, world)
    rig.clock.advance(10.0)
    seen: dict[str, Any] = {}

    def at_switch(event: Event) -> None:
        rig.events.append(event)
        if isinstance(event, TrafficSwitched):
            seen.update(t=rig.clock.now(), forward=world.forward(),
                        green=world.registered(world.alternate_arn),
                        blue=world.registered(), running={
                            i: world.state(i) for i in blue})

    rig.controller.on_event = at_switch
    result = rig.controller.run(world.new)

    assert result.status is RolloutStatus.SUCCEEDED
    # At the switch: all traffic to the second group, which holds only green;
    # blue still registered (warm) in the first group, at weight 0.
    assert seen["forward"] == {world.alternate_arn: 1, world.target_group_arn: 0}
    assert rig.images(seen["green"]) == {world.new.id} and len(seen["green"]) == 2
    assert seen["blue"] == blue and set(seen["running"].values()) == {"running"}
    # The end: the listener still on green, blue deregistered and terminated
    # only after scale_down_delay.
    assert world.forward() == {world.alternate_arn: 1, world.target_group_arn: 0}
    assert world.registered() == set()
    assert rig.images(world.registered(world.alternate_arn)) == {world.new.id}
    for iid in blue:
        assert world.state(iid) in ("shutting-down", "terminated")
    destroyed = [e.at for e in rig.events if isinstance(e, StepStarted) and e.step == "destroy"]
    assert destroyed and min(destroyed) >= seen["t"] + DELAY
    assert rig.in_service() == world.registered(world.alternate_arn)


def test_a_second_blue_green_rollout_switches_back_to_the_first_group(
        pair_world: AwsWorld, tmp_path: Path) -> None:
    world = pair_world
    first = bluegreen(tmp_path / "one", world)
    first.clock.advance(10.0)
    assert first.controller.run(world.new).status is RolloutStatus.SUCCEEDED
    again = bluegreen(tmp_path / "two", world, clock=first.clock, health=first.health)
    assert again.controller.run(world.old).status is RolloutStatus.SUCCEEDED
    assert world.forward() == {world.target_group_arn: 1, world.alternate_arn: 0}
    assert again.images(world.registered()) == {world.old.id}
    assert world.registered(world.alternate_arn) == set()


def test_rollback_within_the_delay_flips_the_listener_back(
        pair_world: AwsWorld, tmp_path: Path) -> None:
    world = pair_world
    blue = world.registered()
    rig = bluegreen(tmp_path, world)
    rig.clock.advance(10.0)
    rig.killed_after_switch(world.new)
    assert world.forward()[world.alternate_arn] == 1  # on green, blue warm

    back = bluegreen(tmp_path, world, clock=rig.clock, health=rig.health)
    result = back.controller.rollback()

    assert result.status is RolloutStatus.ABORTED
    assert world.forward() == {world.target_group_arn: 1, world.alternate_arn: 0}
    assert world.registered() == blue and back.in_service() == blue
    assert world.registered(world.alternate_arn) == set()
    assert {world.state(i) for i in blue} == {"running"}
    chosen = [e for e in back.events if isinstance(e, SideChosen)]
    assert chosen[0].side == "blue" and "rollback" in chosen[0].reason


class DiesAtTheSwitch:
    """The LB, killed after the side was journaled green but before the
    listener was modified."""

    def __init__(self, inner: Elbv2LoadBalancer) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def switch(self, ready: Any, drain: Any) -> None:
        raise Crash("killed before modify_listener")


def test_a_kill_at_the_switch_resumes_to_green(pair_world: AwsWorld, tmp_path: Path) -> None:
    world = pair_world
    rig = bluegreen(tmp_path, world, lb=DiesAtTheSwitch)
    rig.controller.observer.lb = rig.controller.lb
    rig.clock.advance(10.0)
    with pytest.raises(Crash):
        rig.controller.run(world.new)
    # Journal: green; the listener: still blue, green staged at weight 0.
    assert world.forward() == {world.target_group_arn: 1, world.alternate_arn: 0}
    staged = {m.target: m for m in rig.lb.members()}
    green = world.registered(world.alternate_arn)
    assert {staged[t].admin for t in green} == {Admin.DRAIN}

    resumed = bluegreen(tmp_path, world, clock=rig.clock, health=rig.health)
    result = resumed.controller.resume()

    assert result.status is RolloutStatus.SUCCEEDED
    chosen = [e for e in resumed.events if isinstance(e, SideChosen)]
    assert chosen[0].side == "green" and "completing" in chosen[0].reason
    assert world.forward() == {world.alternate_arn: 1, world.target_group_arn: 0}
    assert world.registered(world.alternate_arn) == green and world.registered() == set()
