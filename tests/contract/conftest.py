"""The contract suite's fixtures: one harness per registered driver."""

from __future__ import annotations

from typing import Any

import pytest

import tests.contract.drivers  # noqa: F401  (registers the drivers)
from tests.contract.harness import (
    LOAD_BALANCERS,
    PROVIDERS,
    LbHarness,
    ProviderHarness,
    params,
)


@pytest.fixture(params=params(PROVIDERS))
def provider_harness(request: Any) -> ProviderHarness:
    factory, _ = PROVIDERS[request.param]
    harness: ProviderHarness = factory(request)
    return harness


@pytest.fixture(params=params(LOAD_BALANCERS))
def lb_harness(request: Any) -> LbHarness:
    factory, _ = LOAD_BALANCERS[request.param]
    harness: LbHarness = factory(request)
    return harness
