"""The blue-green preview on ELBv2, through the controller, on moto's server:
the user's listener rule (a host-header condition) that rollout keeps
forwarding to the pool's idle target group.

Real: the listener, the rule and its forward action, the registrations
(moto). Scripted as in test_aws_bluegreen: target health, readiness, smoke.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollout.backends.aws.preview import PreviewRule
from rollout.core.state import RolloutStatus
from rollout.events import Event, SideChosen, StepStarted, TrafficSwitched
from tests.aws.moto_harness import (
    PREVIEW_HOST,
    AwsWorld,
    build_world,
    seed_plain_pool,
    with_listener,
    with_preview_rule,
)
from tests.aws.test_aws_bluegreen import DELAY, Crash, Rig

pytestmark = pytest.mark.aws


@pytest.fixture
def preview_world(aws_env: object) -> AwsWorld:
    world = with_preview_rule(with_listener(build_world(deregistration_delay=5)))
    seed_plain_pool(world, 2)
    return world


def previewed(tmp_path: Path, world: AwsWorld, **kw: Any) -> Rig:
    return Rig(world, tmp_path, strategy="blue_green", scale_down_delay=DELAY,
               blue_green={"preview": True}, preview=True, **kw)


def rule(world: AwsWorld) -> dict[str, Any]:
    """The preview rule as ELBv2 describes it."""
    assert world.preview_rule_arn
    found: dict[str, Any] = world.clients.elbv2.describe_rules(
        RuleArns=[world.preview_rule_arn])["Rules"][0]
    return found


def previews(world: AwsWorld) -> str:
    """The one target group the preview rule forwards to."""
    actions = rule(world)["Actions"]
    assert len(actions) == 1 and actions[0]["Type"] == "forward"
    action = actions[0]
    if "ForwardConfig" in action:
        groups = action["ForwardConfig"]["TargetGroups"]
        assert len(groups) == 1
        return str(groups[0]["TargetGroupArn"])
    return str(action["TargetGroupArn"])


def snapshot(rig: Rig, world: AwsWorld) -> dict[str, Any]:
    """Where the preview and the listener point, and what each group holds."""
    arn = previews(world)
    return {"preview": arn, "images": rig.images(world.registered(arn)),
            "held": world.registered(arn), "forward": world.forward()}


def untouched(world: AwsWorld) -> None:
    """The rule's condition and priority are the user's, never rollout's."""
    found = rule(world)
    assert found["Priority"] == "10"
    assert found["Conditions"] == [
        {"Field": "host-header", "HostHeaderConfig": {"Values": [PREVIEW_HOST]}}]


def test_the_preview_serves_staged_green_then_warm_blue(
        preview_world: AwsWorld, tmp_path: Path) -> None:
    world = preview_world
    blue = world.registered()
    rig = previewed(tmp_path, world)
    rig.clock.advance(10.0)
    seen: dict[str, dict[str, Any]] = {}

    def watch(event: Event) -> None:
        rig.events.append(event)
        if isinstance(event, SideChosen) and event.side == "green":
            seen["staged"] = snapshot(rig, world)  # journaled, listener not yet switched
        if isinstance(event, TrafficSwitched):
            seen["switched"] = snapshot(rig, world)

    rig.controller.on_event = watch
    assert rig.controller.run(world.new).status is RolloutStatus.SUCCEEDED

    # Staged: the listener still serves blue; the preview shows the idle
    # group, which holds the green pool.
    staged = seen["staged"]
    assert staged["forward"] == {world.target_group_arn: 1, world.alternate_arn: 0}
    assert staged["preview"] == world.alternate_arn
    assert staged["images"] == {world.new.id} and len(staged["held"]) == 2
    # Switched: the preview moved to the group now idle, holding warm blue.
    switched = seen["switched"]
    assert switched["forward"] == {world.alternate_arn: 1, world.target_group_arn: 0}
    assert switched["preview"] == world.target_group_arn
    assert switched["held"] == blue and switched["images"] == {world.old.id}
    # Blue retired: the preview stays on the idle (now empty) group.
    assert previews(world) == world.target_group_arn
    untouched(world)


def test_after_a_rollback_the_preview_shows_green_again(
        preview_world: AwsWorld, tmp_path: Path) -> None:
    world = preview_world
    blue = world.registered()
    rig = previewed(tmp_path, world)
    rig.clock.advance(10.0)
    rig.killed_after_switch(world.new)
    assert previews(world) == world.target_group_arn  # warm blue

    back = previewed(tmp_path, world, clock=rig.clock, health=rig.health)
    seen: dict[str, Any] = {}

    def watch(event: Event) -> None:
        back.events.append(event)
        if isinstance(event, StepStarted) and event.step == "lb_remove" and not seen:
            seen.update(snapshot(back, world))  # switched back, green not yet removed

    back.controller.on_event = watch
    assert back.controller.rollback().status is RolloutStatus.ABORTED

    assert seen["forward"] == {world.target_group_arn: 1, world.alternate_arn: 0}
    assert seen["preview"] == world.alternate_arn
    assert seen["images"] == {world.new.id} and len(seen["held"]) == 2
    assert world.registered() == blue and previews(world) == world.alternate_arn
    untouched(world)


class DiesRepointing(PreviewRule):
    """The controller killed after the switch's ``modify_listener`` and
    before the preview rule's ``modify_rule``."""

    def __init__(self, inner: PreviewRule, after_switch_idle: str) -> None:
        super().__init__(inner.arn, clients=inner.clients)
        self.after_switch_idle = after_switch_idle

    def point(self, group_arn: str) -> bool:
        if group_arn == self.after_switch_idle:
            raise Crash("killed between modify_listener and modify_rule")
        return super().point(group_arn)


def test_a_kill_between_the_switch_and_the_rule_is_put_right_by_resume(
        preview_world: AwsWorld, tmp_path: Path) -> None:
    world = preview_world
    blue = world.registered()
    rig = previewed(tmp_path, world)
    listener = rig.lb.listener
    assert listener is not None and listener.preview is not None
    listener.preview = DiesRepointing(listener.preview, world.target_group_arn)
    rig.clock.advance(10.0)
    with pytest.raises(Crash):
        rig.controller.run(world.new)
    # The crash window: the listener serves green, and so does the preview.
    assert world.forward() == {world.alternate_arn: 1, world.target_group_arn: 0}
    assert previews(world) == world.alternate_arn

    resumed = previewed(tmp_path, world, clock=rig.clock, health=rig.health)
    seen: dict[str, Any] = {}

    def watch(event: Event) -> None:
        resumed.events.append(event)
        if isinstance(event, TrafficSwitched):
            seen.update(snapshot(resumed, world))

    resumed.controller.on_event = watch
    assert resumed.controller.resume().status is RolloutStatus.SUCCEEDED

    # Re-pointed while blue is warm, from the listener's state.
    assert seen["forward"] == {world.alternate_arn: 1, world.target_group_arn: 0}
    assert seen["preview"] == world.target_group_arn and seen["held"] == blue
    assert previews(world) == world.target_group_arn
    untouched(world)


def test_the_rule_is_left_alone_without_blue_green_preview(
        preview_world: AwsWorld, tmp_path: Path) -> None:
    world = preview_world
    rig = Rig(world, tmp_path, strategy="blue_green", scale_down_delay=DELAY)
    rig.clock.advance(10.0)
    seen: list[str] = []

    def watch(event: Event) -> None:
        rig.events.append(event)
        if isinstance(event, (SideChosen, TrafficSwitched)):
            seen.append(previews(world))

    rig.controller.on_event = watch
    assert rig.controller.run(world.new).status is RolloutStatus.SUCCEEDED
    assert world.forward() == {world.alternate_arn: 1, world.target_group_arn: 0}
    # Where the user left it, green staged or not.
    assert seen and set(seen) == {world.target_group_arn}
    untouched(world)
