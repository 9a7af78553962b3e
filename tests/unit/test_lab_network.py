"""Pure parts of the lab network: address allocation, interface names, NAT rules."""

from __future__ import annotations

import pytest

from rollout.backends.lab import network
from rollout.config import LabSettings
from rollout.errors import EnvironmentProblem


@pytest.mark.parametrize(
    ("subnet", "used", "expected"),
    [
        ("10.231.1.0/24", [], "10.231.1.2"),
        ("10.231.1.0/24", ["10.231.1.2"], "10.231.1.3"),
        ("10.231.1.0/24", ["10.231.1.2", "10.231.1.4"], "10.231.1.3"),
        ("10.231.1.0/24", ["10.231.1.3"], "10.231.1.2"),
        ("10.231.1.16/28", ["10.231.1.18"], "10.231.1.19"),
    ],
)
def test_allocate_lowest_free_address_after_the_bridge(
    subnet: str, used: list[str], expected: str
) -> None:
    assert network.allocate_address(subnet, used) == expected


def test_allocation_never_repeats_while_recorded() -> None:
    used: list[str] = []
    for _ in range(13):  # a /28 has 14 hosts, one of them the bridge
        used.append(network.allocate_address("10.231.1.16/28", used))
    assert len(set(used)) == 13
    assert "10.231.1.17" not in used
    with pytest.raises(EnvironmentProblem, match="no free address"):
        network.allocate_address("10.231.1.16/28", used)


def test_gateway_is_the_first_host() -> None:
    settings = LabSettings(bridge="rlab1", subnet="10.231.1.0/24")
    assert network.gateway(settings) == "10.231.1.1"
    assert network.prefixlen(settings) == 24


def test_veth_names_fit_and_differ_per_bridge_and_node() -> None:
    long_name = "a" * 63
    host, peer = network.veth_names("rlab1", long_name)
    assert len(host) <= 15 and len(peer) <= 15 and host != peer
    assert network.veth_names("rlab1", "web-1") != network.veth_names("rlab2", "web-1")
    assert network.veth_names("rlab1", "web-1") == network.veth_names("rlab1", "web-1")


def test_nat_rule_is_tagged_and_found_again_in_a_listing() -> None:
    settings = LabSettings(bridge="rlab1", subnet="10.231.1.0/24")
    rule = network.nat_rule(settings)
    assert "rollout-lab:rlab1" in rule
    listing = (
        "-P POSTROUTING ACCEPT\n"
        "-A POSTROUTING -s 10.231.0.0/24 ! -o rollout0 -m comment --comment "
        "rollout-lab:rollout0 -j MASQUERADE\n"
        "-A POSTROUTING -s 10.231.1.0/24 ! -o rlab1 -m comment --comment "
        "rollout-lab:rlab1 -j MASQUERADE\n"
        "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n"
    )
    assert network.our_nat_rules(listing, "rlab1") == [rule]
