"""The drivers registered with the contract suite: the public fakes of
rollout.testing, and the AWS drivers on moto's server (marker aws)."""

from __future__ import annotations

from typing import Any

import pytest

from rollout.model import LaunchSpec
from rollout.testing import FakeClock, FakeLoadBalancer, FakeProvider
from rollout.testing import image as fake_image
from tests.contract.harness import LbHarness, ProviderHarness, register_lb, register_provider


def fake_provider(request: Any) -> ProviderHarness:
    clock = FakeClock()
    provider = FakeProvider(clock, role="web", env="test", boot_time=1.0)
    return ProviderHarness(
        provider, "web", "test", fake_image("web", "2.0.0"), settle=lambda: clock.advance(2.0)
    )


def fake_lb(request: Any) -> LbHarness:
    clock = FakeClock()
    provider = FakeProvider(clock, role="web", env="test", boot_time=1.0)
    nodes = provider.seed(2, fake_image("web", "1.0.0"))
    lb = FakeLoadBalancer(clock, provider, rise=2, interval=0.5, drain_time=0.5)
    return LbHarness(lb, nodes, advance=clock.advance, rise=1.0, drain=0.5)


def _aws_world(request: Any) -> Any:
    from tests.aws.moto_harness import build_world, enter_moto, shared_server

    enter_moto(shared_server(), request.getfixturevalue("monkeypatch"))
    return build_world()


def aws_provider(request: Any) -> ProviderHarness:
    from tests.aws.moto_harness import ENV, ROLE

    world = _aws_world(request)
    return ProviderHarness(world.provider(), ROLE, ENV, world.new, settle=lambda: None)


def aws_lb(request: Any) -> LbHarness:
    from rollout.drivers.elbv2_lb import describe_target_health
    from tests.aws.moto_harness import ENV, ROLE, ScriptedTargetHealth

    world = _aws_world(request)
    clock = FakeClock()
    health = ScriptedTargetHealth(
        describe_target_health(world.clients), clock, world.clients, rise=10.0
    )
    provider = world.provider()
    nodes = [
        provider.launch(LaunchSpec(name=f"web-c{i}", role=ROLE, env=ENV, image=world.old))
        for i in range(2)
    ]
    return LbHarness(world.lb(health), nodes, advance=clock.advance, rise=10.0, drain=30.0)


register_provider("fake", fake_provider)
register_lb("fake", fake_lb)
register_provider("aws", aws_provider, pytest.mark.aws)
register_lb("elbv2", aws_lb, pytest.mark.aws)
