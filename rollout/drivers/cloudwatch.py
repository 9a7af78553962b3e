"""The ``cloudwatch`` analysis provider: one metric's statistic, read with
GetMetricData.

CloudWatch aggregates per ``period``; the reader asks for the datapoints of
the last ``window`` seconds and takes the newest, so a measurement sees the
metric as it is now, not an average over the whole rollout. No datapoint
(nothing published yet: no traffic) and any API error are readings without a
value, i.e. inconclusive, never a pass.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from rollout.config_analysis import CloudWatchAnalysis
from rollout.core.analysis import AnalysisContext, Reading

#: expand(template, ctx, where) -> str, the placeholders of rollout.drivers.analysis.
Expand = Callable[[str, AnalysisContext, str], str]


def metric_query(spec: CloudWatchAnalysis, ctx: AnalysisContext, expand: Expand,
                 where: str) -> dict[str, Any]:
    """The GetMetricData query for ``spec``, its dimension values expanded."""
    dimensions = [{"Name": name, "Value": expand(value, ctx, f"{where}.dimensions.{name}")}
                  for name, value in sorted(spec.dimensions.items())]
    return {"Id": "m", "ReturnData": True,
            "MetricStat": {"Metric": {"Namespace": spec.namespace, "MetricName": spec.metric,
                                      "Dimensions": dimensions},
                           "Period": spec.period, "Stat": str(spec.statistic)}}


def newest_value(answer: dict[str, Any], what: str) -> Reading:
    """The newest datapoint of a GetMetricData answer, or no value."""
    for result in answer.get("MetricDataResults", []):
        points = sorted(zip(result.get("Timestamps", []), result.get("Values", []),
                            strict=False), reverse=True)
        if points:
            return Reading({"result": float(points[0][1])})
    return Reading({}, f"cloudwatch: no datapoints for {what}")


class CloudWatchReader:
    """Takes one reading of a ``cloudwatch`` analysis per call."""

    def __init__(self, spec: CloudWatchAnalysis, ctx: AnalysisContext, region: str,
                 expand: Expand, where: str) -> None:
        self.spec = spec
        self.query = metric_query(spec, ctx, expand, where)
        self.what = f"{spec.namespace}/{spec.metric} {spec.statistic} over {spec.period}s"
        self.client = boto3.client("cloudwatch", region_name=region)

    def __call__(self) -> Reading:
        now = datetime.datetime.now(datetime.UTC)
        start = now - datetime.timedelta(seconds=self.spec.window)
        # The API takes whole seconds: an end of "now" drops a datapoint from
        # this very second. An end one period ahead keeps the current period.
        end = now + datetime.timedelta(seconds=self.spec.period)
        try:
            answer = self.client.get_metric_data(MetricDataQueries=[self.query],
                                                 StartTime=start, EndTime=end)
        except (BotoCoreError, ClientError) as exc:
            return Reading({}, f"cloudwatch: {type(exc).__name__}: {exc}")
        return newest_value(answer, self.what)
