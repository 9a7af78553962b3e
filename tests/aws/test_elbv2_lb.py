"""The ELBv2 load balancer against moto's server. moto reports every target
healthy at once and drops deregistered targets at once, so the paths real
ELBv2 takes (initial, unhealthy, draining for the deregistration delay) go
through ScriptedTargetHealth, a test-only health source on a test clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rollout.backends.aws.elbv2 import Elbv2LoadBalancer, describe_target_health
from rollout.errors import DriverError, NotFoundError
from rollout.model import Admin, Health, LaunchSpec, Member, Node
from rollout.protocols import Clock
from tests.aws.moto_harness import ENV, ROLE, AwsWorld, ScriptedTargetHealth, StepClock

pytestmark = pytest.mark.aws


# A wait of the tests' own (the controller polls through the core instead).
def wait_for_member(
    lb: Elbv2LoadBalancer,
    node: Node,
    done: Callable[[Member | None], bool],
    *,
    clock: Clock,
    timeout: float,
    interval: float = 2.0,
    what: str = "target",
) -> Member | None:
    """Poll ``lb`` until ``done(member)`` holds; DriverError after ``timeout``.

    Wait healthy with
    ``done=lambda m: m is not None and m.in_service``; wait deregistered with
    ``done=lambda m: m is None or m.sessions == 0``.
    """
    deadline = clock.now() + timeout
    while True:
        member = lb.member(node)
        if done(member):
            return member
        if clock.now() >= deadline:
            state = f"{member.admin}/{member.health}" if member else "not registered"
            raise DriverError(
                f"target group {lb.arn}: {node.target} ({node.name}) did not become {what} "
                f"within {timeout:.0f}s (last seen: {state})",
                hint="check the target group's health check and the node's security group",
            )
        clock.sleep(interval)


def node_of(world: AwsWorld, name: str) -> Node:
    provider = world.provider()
    return provider.launch(LaunchSpec(name=name, role=ROLE, env=ENV, image=world.new))


def scripted(world: AwsWorld, clock: StepClock, rise: float = 10.0) -> ScriptedTargetHealth:
    return ScriptedTargetHealth(
        describe_target_health(world.clients), clock, world.clients, rise=rise
    )


def test_register_then_wait_until_healthy_initial_is_not_enough(world: AwsWorld) -> None:
    clock = StepClock()
    lb = world.lb(scripted(world, clock, rise=10.0))
    node = node_of(world, "web-1")

    member = lb.add(node)
    assert member.target == node.target and member.admin is Admin.READY
    assert member.health is Health.UNKNOWN and not member.in_service  # "initial"
    assert node.target in world.registered()

    up = wait_for_member(
        lb,
        node,
        lambda m: m is not None and m.in_service,
        clock=clock,
        timeout=60,
        interval=2.0,
        what="healthy",
    )
    assert up is not None and up.health is Health.UP
    assert 10.0 <= clock.now() - 1_000_000.0 <= 12.0  # waited the rise, then stopped
    assert lb.add(node) == up  # idempotent: no second registration needed


def test_unhealthy_target_is_down_and_the_wait_names_it(world: AwsWorld) -> None:
    clock = StepClock()
    health = scripted(world, clock, rise=0.0)
    health.unhealthy.add("placeholder")
    lb = world.lb(health)
    node = node_of(world, "web-2")
    health.unhealthy = {node.target}

    lb.add(node)
    member = lb.member(node)
    assert member is not None and member.health is Health.DOWN and member.admin is Admin.READY
    with pytest.raises(DriverError) as err:
        wait_for_member(
            lb,
            node,
            lambda m: m is not None and m.in_service,
            clock=clock,
            timeout=20,
            what="healthy",
        )
    assert node.target in str(err.value) and "ready/down" in str(err.value)


def test_deregistration_is_the_drain_and_honours_the_delay(world: AwsWorld) -> None:
    clock = StepClock()
    lb = world.lb(scripted(world, clock, rise=0.0))
    node = node_of(world, "web-3")
    lb.add(node)
    assert lb.member(node).in_service  # type: ignore[union-attr]
    assert lb.deregistration_delay() == 30.0

    lb.set_admin(node, Admin.DRAIN)
    assert node.target not in world.registered()  # ELBv2 (moto) took it out at once
    draining = lb.member(node)
    assert draining is not None and draining.admin is Admin.DRAIN and draining.sessions == 1

    [health] = [d["TargetHealth"] for d in lb.health_source(lb.arn)
                if d["Target"]["Id"] == node.target]
    assert (health["State"], health.get("Reason")) == (
        "draining", "Target.DeregistrationInProgress")
    clock.advance(29.0)
    assert lb.member(node).sessions == 1  # type: ignore[union-attr]
    clock.advance(2.0)
    drained = lb.member(node)  # gone from ELBv2: kept as MAINT until removed
    assert drained is not None and drained.admin is Admin.MAINT and drained.sessions == 0

    lb.remove(node)
    lb.remove(node)  # idempotent
    assert lb.member(node) is None


def test_restore_means_registering_again(world: AwsWorld) -> None:
    clock = StepClock()
    lb = world.lb(scripted(world, clock, rise=5.0))
    node = node_of(world, "web-4")
    lb.add(node)
    clock.advance(6.0)
    lb.set_admin(node, Admin.MAINT)
    assert lb.member(node).admin is Admin.DRAIN  # type: ignore[union-attr]
    clock.advance(31.0)
    assert lb.member(node).admin is Admin.MAINT  # type: ignore[union-attr]

    lb.set_admin(node, Admin.READY)
    again = lb.member(node)
    assert again is not None and again.admin is Admin.READY and again.health is Health.UNKNOWN
    clock.advance(6.0)
    assert lb.member(node).in_service  # type: ignore[union-attr]


def test_members_against_moto_directly(world: AwsWorld) -> None:
    # The production health source, no script: what moto itself says.
    lb = world.lb()
    a, b = node_of(world, "web-5"), node_of(world, "web-6")
    lb.add(a)
    lb.add(b)
    assert {m.target for m in lb.members()} == {a.target, b.target}
    assert all(m.in_service and m.port == 80 for m in lb.members())
    lb.remove(a)
    assert {m.target for m in lb.members()} == {b.target}


def test_unknown_target_group_is_named(world: AwsWorld) -> None:
    arn = world.target_group_arn.rsplit("/", 1)[0] + "/0123456789abcdef"
    lb = world.lb()
    lb.arn = arn
    with pytest.raises(NotFoundError) as err:
        lb.check()
    assert arn in str(err.value)
