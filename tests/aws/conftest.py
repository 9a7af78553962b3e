"""Fixtures of the AWS tests: one moto server (ThreadedMotoServer, a real HTTP
server on 127.0.0.1) per session, reset before each test, and boto3 pointed at
it through the standard chain (``AWS_ENDPOINT_URL`` and fake keys)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aws.moto_harness import UNSET_ENV, AwsWorld, MotoServer, build_world


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    moto_server.reset()
    for key in UNSET_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    return moto_server


@pytest.fixture
def world(aws_env: MotoServer) -> AwsWorld:
    return build_world()


@pytest.fixture
def asg_world(aws_env: MotoServer) -> AwsWorld:
    return build_world(asg_size=2)
