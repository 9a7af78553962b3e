"""Fixtures of the AWS tests: one moto server (ThreadedMotoServer, a real HTTP
server on 127.0.0.1, port 18500-18599) per test process, reset before each
test, and boto3 pointed at it through the standard chain (``AWS_ENDPOINT_URL``
and fake keys in the environment)."""

from __future__ import annotations

import pytest

from tests.aws.moto_harness import AwsWorld, MotoServer, build_world, enter_moto, shared_server


@pytest.fixture(scope="session")
def moto_server() -> MotoServer:
    return shared_server()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    enter_moto(moto_server, monkeypatch)
    return moto_server


@pytest.fixture
def world(aws_env: MotoServer) -> AwsWorld:
    return build_world()


@pytest.fixture
def asg_world(aws_env: MotoServer) -> AwsWorld:
    return build_world(asg_size=2)
