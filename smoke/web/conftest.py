"""Settings of the web smoke suite, passed in by the smoke runner.

The suite runs against ONE node through testinfra (``--hosts=ssh://root@ADDR``).
``ROLLOUT_EXPECT_VERSION`` is the version of the image the node must run;
``ROLLOUT_SERVICE_PORT`` the port nginx serves on (default 80).
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def expected_version() -> str:
    version = os.environ.get("ROLLOUT_EXPECT_VERSION")
    if not version:
        pytest.fail(
            "ROLLOUT_EXPECT_VERSION is not set: run this suite through the smoke runner, "
            "or set it to the version the node must serve"
        )
    return version


@pytest.fixture(scope="session")
def service_port() -> int:
    return int(os.environ.get("ROLLOUT_SERVICE_PORT", "80"))
