"""Looking never changes anything: ``list``, ``readiness`` and ``members``
leave the world as they found it, for every registered driver, even in the
states where acting would have been tempting (see tests/contract/observation.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract.observation import HARNESSES, ObservationHarness, params


@pytest.fixture(params=params())
def observation(request: Any) -> ObservationHarness:
    factory, _ = HARNESSES[request.param]
    return factory(request)


def test_observation_mutates_nothing(observation: ObservationHarness) -> None:
    before = observation.snapshot()
    observation.observe()
    observation.observe()  # twice: a second look must not finish what the first began
    assert observation.snapshot() == before
