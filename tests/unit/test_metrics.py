"""The Prometheus textfile: contents, merging, escaping and atomic replacement.

The file is checked with a small strict parser written here from the text
exposition format, independent of the module's own reader.
"""

from __future__ import annotations

import math
import os
import re
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from rollout.app.metrics import (
    RolloutMetrics,
    Sample,
    format_value,
    record_rollout,
    write_metrics,
)
from rollout.errors import ConfigError, EnvironmentProblem

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def _labels(text: str, lineno: int) -> frozenset[tuple[str, str]]:
    """Label pairs, unescaping only \\\\, \\" and \\n as the format allows."""
    pairs = []
    i = 0
    while i < len(text):
        m = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"").match(text, i)
        assert m, f"line {lineno}: bad label at {text[i:]!r}"
        i = m.end()
        value = []
        while text[i] != '"':
            if text[i] == "\\":
                nxt = text[i + 1]
                assert nxt in '\\"n', f"line {lineno}: bad escape \\{nxt}"
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            else:
                assert text[i] != "\n"
                value.append(text[i])
                i += 1
        i += 1
        pairs.append((m.group(1), "".join(value)))
        if i < len(text):
            assert text[i] == ",", f"line {lineno}: expected ',' at {text[i:]!r}"
            i += 1
    names = [k for k, _ in pairs]
    assert len(names) == len(set(names)), f"line {lineno}: duplicate label"
    return frozenset(pairs)


def parse_strict(text: str) -> tuple[dict[str, str], Series]:
    """(type per family, value per series). Fails on anything off-format:
    a TYPE after its samples, a family split in two, a repeated series."""
    assert text.endswith("\n"), "the file must end with a line feed"
    types: dict[str, str] = {}
    series: Series = {}
    finished: set[str] = set()
    current = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert re.fullmatch(_NAME, name) and kind in _TYPES, line
            assert name not in types, f"line {lineno}: second TYPE for {name}"
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        assert not line.startswith("#") and line.strip(), f"line {lineno}: {line!r}"
        m = re.fullmatch(rf"({_NAME})(?:\{{(.*)\}})? (\S+)", line)
        assert m, f"line {lineno}: not a sample: {line!r}"
        name = m.group(1)
        if name != current:
            assert name not in finished, f"line {lineno}: family {name} is split"
            if current:
                finished.add(current)
            current = name
        key = (name, _labels(m.group(2) or "", lineno))
        assert key not in series, f"line {lineno}: repeated series"
        value = m.group(3)
        special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
        series[key] = special[value] if value in special else float(value)
    return types, series


def s(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


def run(env: str = "lab", role: str = "web", outcome: str = "succeeded", duration: float = 42.5,
        replaced: int = 4, restores: int = 0, at: float = 1700000000.0) -> RolloutMetrics:
    return RolloutMetrics(env=env, role=role, outcome=outcome, duration=duration,
                          nodes_replaced=replaced, restores=restores, finished_at=at)


def test_a_successful_rollout_writes_every_family(tmp_path: Path) -> None:
    path = tmp_path / "rollout.prom"
    record_rollout(path, run())
    types, series = parse_strict(path.read_text())
    assert types == {
        "rollout_duration_seconds": "gauge",
        "rollout_failures_total": "counter",
        "rollout_last_success_timestamp_seconds": "gauge",
        "rollout_nodes_replaced_total": "counter",
        "rollout_restores_total": "counter",
    }
    assert series == {
        s("rollout_duration_seconds", env="lab", role="web", outcome="succeeded"): 42.5,
        s("rollout_nodes_replaced_total", env="lab", role="web"): 4,
        s("rollout_failures_total", env="lab", role="web"): 0,
        s("rollout_restores_total", env="lab", role="web"): 0,
        s("rollout_last_success_timestamp_seconds", env="lab", role="web"): 1700000000.0,
    }
    assert "# HELP rollout_failures_total " in path.read_text()


def test_counters_grow_and_a_failure_keeps_the_last_success(tmp_path: Path) -> None:
    path = tmp_path / "rollout.prom"
    record_rollout(path, run(replaced=4, at=100.0))
    record_rollout(path, run(outcome="failed", duration=7.0, replaced=1, restores=1, at=200.0))
    _, series = parse_strict(path.read_text())
    assert series[s("rollout_nodes_replaced_total", env="lab", role="web")] == 5
    assert series[s("rollout_failures_total", env="lab", role="web")] == 1
    assert series[s("rollout_restores_total", env="lab", role="web")] == 1
    assert series[s("rollout_last_success_timestamp_seconds", env="lab", role="web")] == 100.0
    assert series[s("rollout_duration_seconds", env="lab", role="web", outcome="failed")] == 7.0
    assert series[s("rollout_duration_seconds", env="lab", role="web",
                    outcome="succeeded")] == 42.5


def test_analysis_verdicts_are_counted_per_analysis_and_verdict(tmp_path: Path) -> None:
    path = tmp_path / "rollout.prom"
    verdicts = (("error-rate", "failed"), ("latency", "passed"), ("error-rate", "failed"))
    record_rollout(path, replace(run(outcome="failed"), analysis_verdicts=verdicts))
    record_rollout(path, replace(run(), analysis_verdicts=(("error-rate", "passed"),)))
    _, series = parse_strict(path.read_text())
    key = "rollout_analysis_verdicts_total"
    assert series[s(key, env="lab", role="web", analysis="error-rate", verdict="failed")] == 2
    assert series[s(key, env="lab", role="web", analysis="error-rate", verdict="passed")] == 1
    assert series[s(key, env="lab", role="web", analysis="latency", verdict="passed")] == 1


def test_other_pools_and_foreign_series_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "rollout.prom"
    path.write_text("# HELP site_info Written by someone else.\n# TYPE site_info gauge\n"
                    'site_info{dc="a b"} 1\n')
    record_rollout(path, run(env="prod", role="api", replaced=2))
    record_rollout(path, run(env="prod", role="web", replaced=3))
    types, series = parse_strict(path.read_text())
    assert series[s("site_info", dc="a b")] == 1
    assert types["site_info"] == "gauge"
    assert "# HELP site_info Written by someone else." in path.read_text()
    assert series[s("rollout_nodes_replaced_total", env="prod", role="api")] == 2
    assert series[s("rollout_nodes_replaced_total", env="prod", role="web")] == 3


@pytest.mark.parametrize("value", ['say "hi"', "back\\slash", "two\nlines", "a,b=c}", "ünï"])
def test_label_values_are_escaped(tmp_path: Path, value: str) -> None:
    path = tmp_path / "rollout.prom"
    write_metrics(path, [Sample.of("rollout_duration_seconds", 1.5, env=value, role="web",
                                   outcome="succeeded")])
    _, series = parse_strict(path.read_text())
    assert series == {s("rollout_duration_seconds", env=value, role="web",
                        outcome="succeeded"): 1.5}
    # and our own reader reads it back when merging
    record_rollout(path, run())
    _, series = parse_strict(path.read_text())
    assert series[s("rollout_duration_seconds", env=value, role="web",
                    outcome="succeeded")] == 1.5


@pytest.mark.parametrize(
    ("value", "text"),
    [(3.0, "3"), (0.25, "0.25"), (1700000000.5, "1700000000.5"), (math.inf, "+Inf"),
     (-math.inf, "-Inf"), (math.nan, "NaN"), (1e20, "1e+20"), (-2.0, "-2")],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text


def test_the_file_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "rollout.prom"
    record_rollout(path, run())
    before = os.stat(path).st_ino
    record_rollout(path, run())
    assert os.stat(path).st_ino != before  # a rename, not an in-place rewrite
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["rollout.prom", "rollout.prom.lock"]


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "rollout.prom"

    def writer(role: str) -> None:
        for _ in range(10):
            record_rollout(path, run(role=role, replaced=1))

    threads = [threading.Thread(target=writer, args=(r,)) for r in ("web", "api")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, series = parse_strict(path.read_text())
    assert series[s("rollout_nodes_replaced_total", env="lab", role="web")] == 10
    assert series[s("rollout_nodes_replaced_total", env="lab", role="api")] == 10


def test_an_unreadable_existing_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rollout.prom"
    path.write_text("# TYPE x gauge\nx 1\nthis is not a sample\n")
    with pytest.raises(EnvironmentProblem, match=r"rollout\.prom:3: cannot read"):
        record_rollout(path, run())
    assert path.read_text().endswith("this is not a sample\n")  # left as it was


def test_bad_names_and_outcomes_are_refused() -> None:
    with pytest.raises(ConfigError, match="outcome 'ok'"):
        run(outcome="ok")
    with pytest.raises(ConfigError, match="metric name"):
        Sample.of("rollout-duration", 1.0)
    with pytest.raises(ConfigError, match="label name"):
        Sample.of("x", 1.0, **{"__name__": "y"})
