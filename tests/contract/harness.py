"""The registry of drivers the contract suite runs against.

Each entry is a factory taking pytest's ``request`` and returning a harness:
the driver plus what the suite needs to drive it (an image to launch, a way to
let time pass). To run the suite against another driver, register it, e.g. in
a conftest or here, with its marker:

    register_provider("lab", make_lab_provider, pytest.mark.functional)
    register_lb("haproxy", make_haproxy_lb, pytest.mark.functional)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from rollout.model import Image, Node
from rollout.protocols import LoadBalancer, Provider


@dataclass
class ProviderHarness:
    provider: Provider
    role: str
    env: str
    image: Image  # launchable by this provider
    settle: Callable[[], None]  # let a launched node boot (virtual or real time)


@dataclass
class LbHarness:
    lb: LoadBalancer
    nodes: list[Node]  # two running, ready nodes not yet in the LB
    advance: Callable[[float], None]  # let time pass for health checks and drains
    rise: float  # seconds after which an added, ready node is UP
    drain: float  # seconds after which a drained member has no sessions left


Factory = Callable[[Any], Any]
PROVIDERS: dict[str, tuple[Factory, tuple[Any, ...]]] = {}
LOAD_BALANCERS: dict[str, tuple[Factory, tuple[Any, ...]]] = {}


def register_provider(name: str, factory: Factory, *marks: Any) -> None:
    PROVIDERS[name] = (factory, marks)


def register_lb(name: str, factory: Factory, *marks: Any) -> None:
    LOAD_BALANCERS[name] = (factory, marks)


def params(registry: dict[str, tuple[Factory, tuple[Any, ...]]]) -> list[Any]:
    return [
        pytest.param(name, marks=list(marks), id=name)
        for name, (_, marks) in sorted(registry.items())
    ]
