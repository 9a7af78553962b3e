"""The analysis providers: where a measurement's number comes from, and the
loop that takes ``count`` of them ``interval`` seconds apart.

- ``prometheus``: an instant query (``GET /api/v1/query``); one series or a
  scalar, else no value (an empty vector: no traffic yet).
- ``http``: GET a JSON document; the number at a dotted path.
- ``cloudwatch``: a CloudWatch metric's newest datapoint
  (:mod:`rollout.drivers.cloudwatch`).
- ``haproxy``: the pool's LB counters since the analysis began, the canary's
  5xx share (``result``) against the rest's (``baseline``); fewer than
  ``min_requests`` requests to the canary give no value.

A provider never decides: it returns a :class:`~rollout.core.analysis.Reading`,
and :mod:`rollout.core.analysis` judges it. Errors talking to a provider are
readings without a value (inconclusive), not exceptions: a broken metrics
endpoint must not look like a healthy canary, nor crash the rollout.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import string
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rollout.config_analysis import (
    Analysis,
    CloudWatchAnalysis,
    HAProxyAnalysis,
    HttpAnalysis,
    PrometheusAnalysis,
)
from rollout.core.analysis import (
    AnalysisContext,
    Measurement,
    Reading,
    Verdict,
    judge,
    tally,
)
from rollout.drivers.cloudwatch import CloudWatchReader
from rollout.errors import ConfigError, NotFoundError
from rollout.protocols import Clock, LoadBalancer

Reader = Callable[[], Reading]


def _regex(slots: tuple[str, ...]) -> str:
    return "|".join(re.escape(s) for s in slots) or "^$"


def expand(template: str, ctx: AnalysisContext, where: str, *,
           preview: str | None = None) -> str:
    """``template`` with ``$canary``, ``$baseline``, ``$backend``, ``$rollout``,
    ``$env`` and ``$role`` filled in, and ``$preview``: the base URL of the
    pool's preview frontend (``blue_green.preview``; no trailing slash)."""
    values = {"canary": _regex(ctx.canary_slots), "baseline": _regex(ctx.baseline_slots),
              "backend": ctx.backend, "rollout": ctx.rollout_id, "env": ctx.env,
              "role": ctx.role}
    if preview is not None:
        values["preview"] = preview.rstrip("/")
    try:
        return string.Template(template).substitute(values)
    except KeyError as exc:
        if exc.args == ("preview",):
            raise ConfigError(f"{where}: $preview: the pool has no preview frontend",
                              hint="set rollout.blue_green.preview: true (and, on HAProxy, "
                                   "rollout.haproxy.preview_backend)") from None
        raise ConfigError(f"{where}: unknown placeholder {exc}",
                          hint="use $canary, $baseline, $backend, $rollout, $env, $role or "
                               "$preview ($$ for a literal $)") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: unknown placeholder {exc}",
                          hint="use $canary, $baseline, $backend, $rollout, $env or $role "
                               "($$ for a literal $)") from None


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def prometheus_value(body: Mapping[str, Any]) -> Reading:
    """The single number of a Prometheus ``/api/v1/query`` answer."""
    if body.get("status") != "success":
        return Reading({}, f"prometheus: {body.get('error') or 'query failed'}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("scalar", "string") and isinstance(result, list) and len(result) == 2:
        value = _float(result[1])
    elif kind == "vector" and isinstance(result, list):
        if not result:
            return Reading({}, "prometheus: the query returned no series (no traffic yet?)")
        if len(result) > 1:
            return Reading({}, f"prometheus: the query returned {len(result)} series; "
                               "aggregate it to one (sum, max...)")
        value = _float((result[0].get("value") or [None, None])[1])
    else:
        return Reading({}, f"prometheus: cannot judge a {kind} result; write an instant query")
    if value is None:
        return Reading({}, "prometheus: the value is NaN (no requests in the window?)")
    return Reading({"result": value})


def json_path(body: Any, path: str) -> Reading:
    """The number at dotted ``path`` in a JSON document (list items by index)."""
    node = body
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return Reading({}, f"http: no {path!r} in the answer")
    value = _float(node) if not isinstance(node, bool) else float(node)
    if value is None:
        return Reading({}, f"http: {path!r} is {node!r}, not a number")
    return Reading({"result": value})


def _get(url: str, timeout: float, params: Mapping[str, str] | None = None) -> Any:
    # The standard library's client, not requests: every command imports this
    # module (through the workspace), and requests costs ~0.2 s of startup on a
    # busy host, which `rollout rollback` pays before it can switch back.
    if params:
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # HTTPError: 4xx, 5xx
        return json.load(answer)


def _guard(read: Callable[[], Reading], what: str) -> Reading:
    try:
        return read()
    # OSError: refused, timed out, HTTP 4xx/5xx (URLError, HTTPError);
    # ValueError: not JSON, or not a URL.
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Reading({}, f"{what}: {type(exc).__name__}: {exc}")


@dataclass
class _HAProxyShare:
    """5xx shares from LB counters, as deltas since the first reading."""

    spec: HAProxyAnalysis
    ctx: AnalysisContext
    lb: LoadBalancer
    base: dict[str, tuple[int, int]] = field(default_factory=dict)

    def _counts(self) -> dict[str, tuple[int, int]]:
        return {m.target: (m.total_sessions, m.http_5xx) for m in self.lb.members() if m.target}

    def start(self) -> None:
        self.base = self._counts()

    def __call__(self) -> Reading:
        now = self._counts()

        def share(targets: tuple[str, ...]) -> tuple[int, float | None]:
            total = errors = 0
            for t in targets:
                t_all, t_5xx = now.get(t, (0, 0))
                b_all, b_5xx = self.base.get(t, (0, 0))
                total += max(0, t_all - b_all)
                errors += max(0, t_5xx - b_5xx)
            return total, (errors / total if total else None)

        canary_total, canary = share(self.ctx.canary_targets)
        _, baseline = share(self.ctx.baseline_targets)
        values = {"result": canary if canary is not None else math.nan,
                  "baseline": baseline if baseline is not None else 0.0}
        if canary_total < self.spec.min_requests:
            return Reading(values, f"haproxy: {canary_total} requests to the canary, fewer than "
                                   f"min_requests {self.spec.min_requests}")
        return Reading(values)


@dataclass
class Analyses:
    """The pool's analyses, measured through its LB and ``prometheus`` (the
    default address of ``prometheus`` analyses; None when the backend has none)."""

    analyses: Mapping[str, Analysis]
    lb: LoadBalancer
    clock: Clock
    prometheus: str | None = None
    where: str = "rollout.analyses"
    region: str | None = None  # of ``cloudwatch`` analyses without their own
    preview: str | None = None  # the preview frontend's URL, for ``$preview``

    def spec(self, name: str) -> Analysis:
        spec = self.analyses.get(name)
        if spec is None:
            known = ", ".join(sorted(self.analyses)) or "none"
            raise NotFoundError(f"{self.where}: no analysis named {name!r} (defined: {known})",
                                hint=f"define it under rollout.analyses.{name} in the pool's "
                                     "group_vars")
        return spec

    def reader(self, name: str, ctx: AnalysisContext) -> Reader:
        """A callable that takes one reading of analysis ``name``."""
        spec, where = self.spec(name), f"{self.where}.{name}"
        if isinstance(spec, PrometheusAnalysis):
            address = spec.address or self.prometheus
            if address is None:
                raise ConfigError(f"{where}: no address, and the pool's backend runs no "
                                  "Prometheus", hint=f"set {where}.address")
            query = expand(spec.query, ctx, f"{where}.query", preview=self.preview)
            url, timeout = address.rstrip("/") + "/api/v1/query", spec.timeout
            return lambda: _guard(
                lambda: prometheus_value(_get(url, timeout, {"query": query})), "prometheus")
        if isinstance(spec, HttpAnalysis):
            target = expand(spec.url, ctx, f"{where}.url", preview=self.preview)
            path, timeout = spec.path, spec.timeout
            return lambda: _guard(lambda: json_path(_get(target, timeout), path), "http")
        if isinstance(spec, CloudWatchAnalysis):
            region = spec.region or self.region
            if region is None:
                raise ConfigError(f"{where}: no region, and the pool has no aws.region",
                                  hint=f"set {where}.region")
            return CloudWatchReader(spec, ctx, region, expand, where)
        share = _HAProxyShare(spec, ctx, self.lb)
        share.start()
        return share

    def analyze(self, name: str, ctx: AnalysisContext) -> Verdict:
        """Measure analysis ``name`` until its verdict is clear: ``count``
        readings ``interval`` apart, or fewer when ``failure_limit`` is crossed."""
        spec = self.spec(name)
        read = self.reader(name, ctx)
        taken: list[Measurement] = []
        # LB counters are deltas since the start, so the first one waits too.
        first_waits = isinstance(spec, HAProxyAnalysis)
        while True:
            if taken or first_waits:
                self.clock.sleep(spec.interval)
            taken.append(judge(name, spec, read(), self.clock.now()))
            verdict = tally(name, spec, taken)
            if verdict is not None:
                return verdict


__all__ = ["Analyses", "expand", "json_path", "prometheus_value"]
