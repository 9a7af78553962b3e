"""Harnesses for the read-only contract: a pool left in the states where an
observation was once tempted to act (a free data volume, a node not yet in its
group, a removal never finished), the observation calls the core makes
(``list``, ``readiness`` of every node, ``members``), and a snapshot of the
world that any change would alter.

- fake: the public fakes' own state.
- aws (marker aws): every API call made during the observation, recorded by a
  botocore event hook on the clients; a mutation is any operation whose name
  is not Describe*/List*/Get*.
- lab (marker functional): the data directory tree (paths, sizes, mtimes),
  the network namespaces, and HAProxy's ``show servers state``.
"""

from __future__ import annotations

import copy
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from rollout.model import LaunchSpec, NodeState, Setup
from rollout.protocols import LoadBalancer, Provider
from rollout.testing import FakeClock, FakeLoadBalancer, FakeProvider
from rollout.testing import image as fake_image


@dataclass
class ObservationHarness:
    provider: Provider
    lb: LoadBalancer
    snapshot: Callable[[], Any]  # the world, as far as a mutation would show

    def observe(self) -> None:
        """What the controller's observe step does: list, probe, read the LB."""
        for node in self.provider.list():
            self.provider.readiness(node)
        self.lb.members()


Factory = Callable[[Any], ObservationHarness]
HARNESSES: dict[str, tuple[Factory, tuple[Any, ...]]] = {}


def params() -> list[Any]:
    return [pytest.param(name, marks=list(marks), id=name)
            for name, (_, marks) in sorted(HARNESSES.items())]


# -- fake --------------------------------------------------------------------------


def fake(request: Any) -> ObservationHarness:
    clock = FakeClock()
    provider = FakeProvider(clock, role="web", env="test", setup=tuple(Setup),
                            two_step_removal=True)
    lb = FakeLoadBalancer(clock, provider)
    lb.seed(provider.seed(2, fake_image("web", "1.0.0")))
    new = fake_image("web", "2.0.0")
    owes = provider.launch(LaunchSpec("web-owes", "web", "test", new, rollout_id="r-obs"))
    going = provider.launch(LaunchSpec("web-going", "web", "test", new, rollout_id="r-obs"))
    clock.advance(5.0)
    provider.attach_volume(going)
    provider.destroy(going)
    assert provider.readiness(owes).setup is Setup.ATTACH_VOLUME

    def snapshot() -> Any:
        return (copy.deepcopy(provider.machines), sorted(
            (m.target, m.admin, m.health) for m in lb.members()))

    return ObservationHarness(provider, lb, snapshot)


# -- aws (moto's server) -------------------------------------------------------------

_READ_ONLY = ("Describe", "List", "Get")


def aws(request: Any) -> ObservationHarness:
    from rollout.backends.aws.elbv2 import describe_target_health
    from rollout.backends.aws.provider import AwsProvider
    from rollout.config import PoolSettings
    from tests.aws.moto_harness import (
        ENV,
        ROLE,
        ScriptedTargetHealth,
        StepClock,
        always_ready,
        build_world,
        enter_moto,
        register,
        shared_server,
    )

    enter_moto(shared_server(), request.getfixturevalue("monkeypatch"))
    world = build_world(asg_size=2)
    data = world.settings().model_dump()
    data.update(volume="/var/lib/data", strategy="in_place", max_unavailable=1, min_healthy=1)
    provider = AwsProvider(ENV, ROLE, PoolSettings.model_validate(data), clients=world.clients,
                           images=world.images, probe=always_ready, clock=StepClock())
    clock = FakeClock()
    lb = world.lb(ScriptedTargetHealth(describe_target_health(world.clients), clock,
                                       world.clients))
    register(world, [n.target for n in provider.list()])

    def launch(name: str) -> Any:
        return provider.launch(LaunchSpec(name=name, role=ROLE, env=ENV, image=world.new,
                                          rollout_id="r-obs"))

    # One node whose fresh volume waits to be attached, one whose volume is on
    # and which waits to join the ASG it is tagged for (set up without calling
    # readiness, so that the setup itself holds on any version of the driver).
    free = launch("web-obs-free")
    joining = launch("web-obs-join")
    assert provider.volumes is not None
    provider.volumes.attach_held(joining.name, joining.target)
    assert provider.volumes.held_by(free.name)["State"] == "available"  # type: ignore[index]
    assert joining.target not in {i["InstanceId"] for i in world.group()["Instances"]}

    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(str(model.name))

    for client in (world.clients.ec2, world.clients.autoscaling, world.clients.elbv2):
        client.meta.events.register("before-call", record)

    def snapshot() -> Any:
        return sorted(c for c in calls if not c.startswith(_READ_ONLY))

    return ObservationHarness(provider, lb, snapshot)


# -- lab (the real nspawn nodes and HAProxy of the session lab) -------------------------

LAB_OBS = "r-observe"


def _tree(root: Path) -> list[tuple[str, int, int]]:
    """Every path under ``root`` with its size and mtime (ns)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            out.append((str(path.relative_to(root)), st.st_size, st.st_mtime_ns))
    return sorted(out)


def _netns() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True).stdout
    return sorted(line.split()[0] for line in listed.splitlines() if line.strip())


def lab(request: Any) -> ObservationHarness:
    from rollout.app.workspace import Workspace
    from rollout.backends.lab import haproxy_process
    from rollout.backends.lab.records import read_record, write_record

    handle = request.getfixturevalue("lab")
    ws = Workspace(project=handle.project, env=handle.env, data=handle.data)
    drivers = ws.drivers("web")
    provider, lb = drivers.provider, drivers.lb
    image = drivers.images.latest("web")

    def cleanup() -> None:
        for node in provider.list():
            if node.rollout_id == LAB_OBS:
                provider.destroy(node)
                provider.finish_removal(node)

    request.addfinalizer(cleanup)
    running = provider.launch(LaunchSpec(name="web-obs-run", role="web", env=handle.env.name,
                                         image=image, rollout_id=LAB_OBS))
    going = provider.launch(LaunchSpec(name="web-obs-gone", role="web", env=handle.env.name,
                                       image=image, rollout_id=LAB_OBS))
    deadline = time.monotonic() + 60
    while not provider.readiness(running).ready:
        assert time.monotonic() < deadline, "web-obs-run never became ready"
        time.sleep(0.2)
    # A removal whose controller died after the node powered off: the record
    # says removing, nspawn has exited, netns and keys are still there.
    provider.stop(going)
    rec = read_record(handle.context, going.name)
    assert rec is not None
    write_record(handle.context, replace(rec, removing=True))
    assert {n.name: n.state for n in provider.list()}.get(going.name) in (
        NodeState.REMOVING, None)
    runtime = haproxy_process.runtime(handle.data)
    backend = handle.env.pool("web").settings.haproxy.backend

    def snapshot() -> Any:
        # Node consoles are written by the nodes themselves, and the lab's
        # Prometheus writes its log and TSDB as it scrapes: our own files only.
        tree = [t for t in _tree(handle.data.root) if not t[0].endswith("console.log")
                and "/cache/" not in f"/{t[0]}"
                and not t[0].startswith("lab/prometheus")]
        servers = sorted((r.srv_name, r.srv_addr, r.srv_port, r.srv_op_state,
                          r.srv_admin_state) for r in runtime.show_servers_state(backend))
        return tree, _netns(), servers

    return ObservationHarness(provider, lb, snapshot)


HARNESSES["fake"] = (fake, ())
HARNESSES["aws"] = (aws, (pytest.mark.aws,))
HARNESSES["lab"] = (lab, (pytest.mark.functional,))
