"""The drivers registered with the contract suite: the public fakes of
rollout.testing, the AWS drivers on moto's server (marker aws), and the lab's
nspawn provider and HAProxy driver on the real lab (marker functional)."""

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
    from rollout.backends.aws.elbv2 import describe_target_health
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


# -- the lab drivers: real nspawn nodes and the real HAProxy (marker functional) --
# They run inside the shared session lab (tests/conftest.py); every node they
# launch carries the rollout id LAB_CONTRACT and is destroyed afterwards, so
# the pool is left as it was.

LAB_CONTRACT = "r-contract"


def _lab_workspace(request: Any) -> Any:
    from rollout.app.workspace import Workspace

    lab = request.getfixturevalue("lab")
    return Workspace(project=lab.project, env=lab.env, data=lab.data)


def _cleanup_lab_nodes(provider: Any, lb: Any = None) -> None:
    for node in provider.list():
        if node.rollout_id == LAB_CONTRACT:
            if lb is not None:
                lb.remove(node)
            provider.destroy(node)
            provider.finish_removal(node)


def _wait_ready(provider: Any, timeout: float = 60.0) -> None:
    """Real time: until every running contract node answers its readiness probe."""
    import time

    from rollout.model import NodeState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [n for n in provider.list()
                   if n.rollout_id == LAB_CONTRACT and n.state is not NodeState.STOPPED
                   and not provider.readiness(n).ready]
        if not pending:
            return
        time.sleep(0.1)
    raise AssertionError(f"lab contract nodes not ready within {timeout:g}s")


def lab_provider(request: Any) -> ProviderHarness:
    ws = _lab_workspace(request)
    drivers = ws.drivers("web")
    provider = drivers.provider
    request.addfinalizer(lambda: _cleanup_lab_nodes(provider))
    return ProviderHarness(provider, "web", ws.env.name, drivers.images.latest("web"),
                           settle=lambda: _wait_ready(provider))


def haproxy_lb(request: Any) -> LbHarness:
    import time

    ws = _lab_workspace(request)
    drivers = ws.drivers("web")
    provider, lb = drivers.provider, drivers.lb
    request.addfinalizer(lambda: _cleanup_lab_nodes(provider, lb))
    image = drivers.images.latest("web")
    nodes = [provider.launch(LaunchSpec(name=f"web-c{i}", role="web", env=ws.env.name,
                                        image=image, rollout_id=LAB_CONTRACT))
             for i in range(2)]
    _wait_ready(provider)
    # HAProxy checks every 0.5 s and needs 2 good ones: rise in about 1 s.
    return LbHarness(lb, nodes, advance=time.sleep, rise=2.0, drain=1.0)


register_provider("lab", lab_provider, pytest.mark.functional)
register_lb("haproxy", haproxy_lb, pytest.mark.functional)
