"""Analyses: named measurements that judge a canary, defined in a pool's
group_vars under ``rollout.analyses`` and picked by ``rollout.analysis`` (the
canary soak) or ``rollout run --analysis NAME``.

Each analysis takes ``count`` measurements ``interval`` seconds apart. A
measurement is a number (``result``; the ``haproxy`` provider also gives
``baseline``, the same figure for the rest of the pool) checked against
``success``, a condition in the small language of :mod:`rollout.condition`. The
analysis fails once more than ``failure_limit`` measurements failed, and is
inconclusive when more than ``inconclusive_limit`` had no usable value (no
traffic, an empty query, an unreachable endpoint): then ``inconclusive`` says
whether the rollout pauses or fails. An inconclusive analysis never passes.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from rollout.condition import ConditionError, parse_condition
from rollout.durations import parse_duration

_Duration = Annotated[float, BeforeValidator(parse_duration)]
_JSON_PATH = re.compile(r"^[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*$")


class OnInconclusive(StrEnum):
    """What an inconclusive analysis does to the rollout."""

    PAUSE = "pause"
    FAIL = "fail"


class _Analysis(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    success: str
    interval: _Duration = Field(5.0, gt=0, le=3600)
    count: int = Field(3, ge=1, le=1000)
    failure_limit: int = Field(0, ge=0)
    inconclusive_limit: int = Field(0, ge=0)
    inconclusive: OnInconclusive = OnInconclusive.FAIL

    #: The variables ``success`` may use.
    VARIABLES: ClassVar[tuple[str, ...]] = ("result",)

    @field_validator("success")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            parse_condition(value, cls.VARIABLES)
        except ConditionError as exc:
            raise ValueError(exc.message) from None
        return value

    @property
    def seconds(self) -> float:
        """How long the analysis takes at most (the measurements' spacing)."""
        return self.interval * max(0, self.count - 1)


class PrometheusAnalysis(_Analysis):
    """A PromQL instant query; its single value is ``result``. The query may
    use ``$canary`` (a regex of the canary's LB slots, for ``server=~"$canary"``),
    ``$baseline`` (the other in-service slots), ``$backend`` and ``$rollout``.
    ``address`` defaults to the backend's Prometheus (the lab's own)."""

    provider: Literal["prometheus"]
    query: str = Field(min_length=1)
    address: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    timeout: _Duration = Field(5.0, gt=0, le=60)


class HttpAnalysis(_Analysis):
    """GET ``url`` (same placeholders as a Prometheus query); the number at the
    dotted ``path`` of its JSON answer is ``result``. A ``url`` may also start
    with ``$preview``: the pool's preview frontend (``blue_green.preview``)."""

    provider: Literal["http"]
    url: str = Field(pattern=r"^(?:https?://[^\s]+|(?:\$preview|\$\{preview\})(?:/[^\s]*)?)$")
    path: str = Field(pattern=_JSON_PATH.pattern)
    timeout: _Duration = Field(5.0, gt=0, le=60)


class HAProxyAnalysis(_Analysis):
    """The pool's own LB counters since the analysis started: ``result`` is the
    canary's share of 5xx responses, ``baseline`` the rest of the pool's. Below
    ``min_requests`` requests to the canary a measurement is inconclusive."""

    provider: Literal["haproxy"]
    metric: Literal["5xx_share"] = "5xx_share"
    min_requests: int = Field(20, ge=1)
    VARIABLES: ClassVar[tuple[str, ...]] = ("result", "baseline")


class Statistic(StrEnum):
    """The CloudWatch statistics an analysis may read."""

    AVERAGE = "Average"
    SUM = "Sum"
    MINIMUM = "Minimum"
    MAXIMUM = "Maximum"
    SAMPLE_COUNT = "SampleCount"


class CloudWatchAnalysis(_Analysis):
    """A CloudWatch metric (``namespace``, ``metric``, ``dimensions``), its
    ``statistic`` over ``period`` seconds; the newest datapoint within the last
    ``window`` is ``result``, and none is no value. Dimension values take the
    same placeholders as a Prometheus query. ``region`` defaults to the pool's
    ``aws.region``; credentials and endpoint come from boto3's usual chain."""

    provider: Literal["cloudwatch"]
    namespace: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    dimensions: dict[str, str] = Field(default_factory=dict)
    statistic: Statistic = Statistic.AVERAGE
    period: int = Field(60, ge=1, le=86400)
    window: _Duration = Field(300.0, gt=0, le=86400)
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")


Analysis = Annotated[
    PrometheusAnalysis | HttpAnalysis | HAProxyAnalysis | CloudWatchAnalysis,
    Field(discriminator="provider"),
]

__all__ = ["Analysis", "CloudWatchAnalysis", "HAProxyAnalysis", "HttpAnalysis", "OnInconclusive",
           "PrometheusAnalysis", "Statistic"]
