"""A cloudwatch analysis is checked when the pool's settings load: its
statistic, and a region from the analysis or the pool's aws block."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rollout.config_analysis import CloudWatchAnalysis, Statistic
from rollout.core.analysis import AnalysisContext
from rollout.drivers.analysis import expand
from rollout.drivers.cloudwatch import metric_query, newest_value
from rollout.testing import pool_settings

SPEC: dict[str, Any] = {"provider": "cloudwatch", "success": "result < 1", "namespace": "App",
                        "metric": "Errors", "dimensions": {"Rollout": "$rollout"}}
CTX = AnalysisContext("prod", "web", "r-7", "web", ("i-1",), ("i-1",))


def test_a_cloudwatch_analysis_without_any_region_is_refused() -> None:
    with pytest.raises(ValidationError,
                       match=r"analyses\.errors: a cloudwatch analysis needs a region"):
        pool_settings(analyses={"errors": SPEC})


def test_its_own_region_is_enough() -> None:
    settings = pool_settings(analyses={"errors": {**SPEC, "region": "eu-west-1"}})
    spec = settings.analyses["errors"]
    assert isinstance(spec, CloudWatchAnalysis) and spec.statistic is Statistic.AVERAGE


def test_an_unknown_statistic_is_refused() -> None:
    with pytest.raises(ValidationError, match="statistic"):
        pool_settings(analyses={"errors": {**SPEC, "region": "eu-west-1", "statistic": "p99"}})


def test_the_query_expands_dimensions_and_the_newest_point_wins() -> None:
    spec = CloudWatchAnalysis.model_validate({**SPEC, "region": "eu-west-1", "period": 30})
    query = metric_query(spec, CTX, expand, "rollout.analyses.errors")
    assert query["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "Rollout", "Value": "r-7"}]
    assert query["MetricStat"]["Period"] == 30 and query["MetricStat"]["Stat"] == "Average"
    answer = {"MetricDataResults": [{"Timestamps": [1, 3, 2], "Values": [0.1, 0.3, 0.2]}]}
    assert newest_value(answer, "x").values == {"result": 0.3}
    assert newest_value({"MetricDataResults": [{"Timestamps": [], "Values": []}]}, "x").error
