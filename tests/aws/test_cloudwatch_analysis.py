"""The ``cloudwatch`` analysis provider against moto's real server: the
newest datapoint judges the canary, and no datapoint is inconclusive."""

from __future__ import annotations

import datetime
from typing import Any

import boto3
import pytest
from pydantic import TypeAdapter

from rollout.config_analysis import Analysis
from rollout.core.analysis import AnalysisContext, VerdictKind
from rollout.drivers.analysis import Analyses
from rollout.errors import ConfigError
from rollout.testing import FakeClock, FakeWorld
from tests.aws.moto_harness import REGION, MotoServer

pytestmark = pytest.mark.aws

ADAPTER: TypeAdapter[Analysis] = TypeAdapter(Analysis)
CTX = AnalysisContext("prod", "web", "r-42", "web", ("i-new",), ("i-new",), ("i-old",),
                      ("i-old",))
SPEC: dict[str, Any] = {
    "provider": "cloudwatch", "success": "result < 0.05", "count": 2, "interval": "1s",
    "namespace": "Shop/Web", "metric": "ErrorRate", "statistic": "Maximum", "period": 60,
    "dimensions": {"Rollout": "$rollout", "Role": "web"},
}


def _analyses(spec: dict[str, Any], region: str | None = REGION) -> Analyses:
    return Analyses({"errors": ADAPTER.validate_python(spec)}, FakeWorld.create(1).lb,
                    FakeClock(), region=region)


def _publish(value: float, rollout: str = "r-42") -> None:
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(
        Namespace="Shop/Web", MetricData=[{
            "MetricName": "ErrorRate", "Value": value,
            "Timestamp": datetime.datetime.now(datetime.UTC),
            "Dimensions": [{"Name": "Role", "Value": "web"},
                           {"Name": "Rollout", "Value": rollout}]}])


def test_a_low_error_rate_passes(aws_env: MotoServer) -> None:
    _publish(0.01)
    verdict = _analyses(SPEC).analyze("errors", CTX)
    assert verdict.kind is VerdictKind.PASSED, verdict
    assert [m.result for m in verdict.measurements] == [0.01, 0.01]


def test_a_high_error_rate_fails_on_the_first_measurement(aws_env: MotoServer) -> None:
    _publish(0.2)
    verdict = _analyses(SPEC).analyze("errors", CTX)
    assert verdict.kind is VerdictKind.FAILED, verdict
    assert len(verdict.measurements) == 1 and verdict.measurements[0].result == 0.2


def test_no_datapoint_for_this_rollout_is_inconclusive(aws_env: MotoServer) -> None:
    _publish(0.0, rollout="another-rollout")  # the dimension picks the rollout's own
    verdict = _analyses(SPEC).analyze("errors", CTX)
    assert verdict.kind is VerdictKind.INCONCLUSIVE, verdict
    assert "no datapoints" in verdict.measurements[0].detail


def test_an_api_error_is_inconclusive_not_a_pass(aws_env: MotoServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    verdict = _analyses({**SPEC, "count": 1}).analyze("errors", CTX)
    assert verdict.kind is VerdictKind.INCONCLUSIVE, verdict


def test_no_region_anywhere_is_a_config_error(aws_env: MotoServer) -> None:
    with pytest.raises(ConfigError, match="region"):
        _analyses(SPEC, region=None).analyze("errors", CTX)
