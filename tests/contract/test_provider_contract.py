"""What every Provider must do, run against each registered driver."""

from __future__ import annotations

from rollout.model import LaunchSpec, Node, NodeState, SshTarget
from tests.contract.harness import ProviderHarness


def spec(h: ProviderHarness, name: str, rollout_id: str | None = "r-contract") -> LaunchSpec:
    return LaunchSpec(name=name, role=h.role, env=h.env, image=h.image, rollout_id=rollout_id)


def named(h: ProviderHarness, name: str) -> list[Node]:
    return [n for n in h.provider.list() if n.name == name]


def test_launch_is_idempotent_on_name(provider_harness: ProviderHarness) -> None:
    h = provider_harness
    first = h.provider.launch(spec(h, "web-k1"))
    second = h.provider.launch(spec(h, "web-k1"))
    assert second.name == first.name == "web-k1"
    assert second.lb_target == first.lb_target
    assert len(named(h, "web-k1")) == 1


def test_list_shows_launched_nodes_with_role_env_image(provider_harness: ProviderHarness) -> None:
    h = provider_harness
    h.provider.launch(spec(h, "web-k2"))
    (node,) = named(h, "web-k2")
    assert (node.role, node.env) == (h.role, h.env)
    assert (node.image_id, node.image_version) == (h.image.id, h.image.version)
    assert node.rollout_id == "r-contract"
    assert node.state in (NodeState.PENDING, NodeState.RUNNING)


def test_a_launched_node_becomes_ready(provider_harness: ProviderHarness) -> None:
    h = provider_harness
    node = h.provider.launch(spec(h, "web-k3"))
    h.settle()
    assert h.provider.readiness(node).ready
    (listed,) = named(h, "web-k3")
    assert listed.state is NodeState.RUNNING


def test_destroy_is_idempotent_and_the_node_stops_running(
    provider_harness: ProviderHarness,
) -> None:
    h = provider_harness
    node = h.provider.launch(spec(h, "web-k4"))
    h.settle()
    h.provider.destroy(node)
    h.provider.destroy(node)
    assert all(n.state is not NodeState.RUNNING for n in named(h, "web-k4"))
    assert not h.provider.readiness(node).ready


def test_stop_and_start_keep_name_and_image(provider_harness: ProviderHarness) -> None:
    h = provider_harness
    node = h.provider.launch(spec(h, "web-k5"))
    h.settle()
    h.provider.stop(node)
    assert [n.state for n in named(h, "web-k5")] == [NodeState.STOPPED]
    started = h.provider.start(node)
    h.settle()
    assert (started.name, started.image_id) == ("web-k5", h.image.id)
    assert h.provider.readiness(started).ready


def test_ssh_names_the_node_address(provider_harness: ProviderHarness) -> None:
    h = provider_harness
    h.provider.launch(spec(h, "web-k6"))
    h.settle()
    (listed,) = named(h, "web-k6")
    target = h.provider.ssh(listed)
    assert isinstance(target, SshTarget) and target.host == listed.address
    assert target.host_key_policy in ("verify", "accept-new", "ignore")
