"""Rollout metrics in the Prometheus text format, for node_exporter's textfile collector.

``--metrics-file PATH`` names a file such as
``/var/lib/node_exporter/textfile/rollout.prom``. Each rollout merges its
pool's series into the file and keeps every other series, so one file serves
every pool of the machine. The file is replaced atomically (a temp file in the
same directory, then rename), because the collector may read it at any moment;
the temp file's name does not end in ``.prom`` so the collector ignores it. A
lock file next to it (``PATH.lock``) serialises concurrent writers.

Families written by :func:`record_rollout`:

=========================================  =======  ====================
name                                       type     labels
=========================================  =======  ====================
rollout_duration_seconds                   gauge    env, role, outcome
rollout_nodes_replaced_total               counter  env, role
rollout_failures_total                     counter  env, role
rollout_restores_total                     counter  env, role
rollout_last_success_timestamp_seconds     gauge    env, role
=========================================  =======  ====================

``outcome`` is one of succeeded, failed, halted, interrupted.
"""

from __future__ import annotations

import fcntl
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rollout.errors import ConfigError, EnvironmentProblem
from rollout.fsio import write_atomic

OUTCOMES = ("succeeded", "failed", "halted", "interrupted")

# name -> (type, help)
FAMILIES: dict[str, tuple[str, str]] = {
    "rollout_duration_seconds": (
        "gauge", "Duration of the last rollout of a pool, by outcome."),
    "rollout_nodes_replaced_total": (
        "counter", "Nodes replaced by rollouts of a pool."),
    "rollout_failures_total": (
        "counter", "Rollouts of a pool that did not succeed."),
    "rollout_restores_total": (
        "counter", "Nodes put back in service after a failed replacement."),
    "rollout_last_success_timestamp_seconds": (
        "gauge", "Unix time of the last successful rollout of a pool."),
    "rollout_analysis_verdicts_total": (
        "counter", "Analysis verdicts of a pool's rollouts, by analysis and verdict."),
}

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+-?\d+)?$"
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


@dataclass(frozen=True)
class Sample:
    """One series value. ``labels`` is kept sorted so equal series compare equal."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    @classmethod
    def of(cls, name: str, value: float, **labels: str) -> Sample:
        if not _METRIC_NAME.fullmatch(name):
            raise ConfigError(f"metrics: {name!r} is not a valid Prometheus metric name")
        for key in labels:
            if not _LABEL_NAME.fullmatch(key) or key.startswith("__"):
                raise ConfigError(f"metrics: {key!r} is not a valid Prometheus label name")
        return cls(name, tuple(sorted(labels.items())), float(value))

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (self.name, self.labels)


def escape_label_value(value: str) -> str:
    """Escape a label value: backslash, double quote and line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _parse_value(text: str) -> float:
    special = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}
    if text.lower() in special:
        return special[text.lower()]
    return float(text)


@dataclass
class _Family:
    type: str = "untyped"
    help: str = ""


def parse_textfile(text: str, where: str = "metrics file") -> tuple[dict[str, _Family],
                                                                     list[Sample]]:
    """Families (HELP/TYPE) and samples of a text-format file; raises
    EnvironmentProblem naming the file and line on anything it cannot read."""
    families: dict[str, _Family] = {}
    samples: list[Sample] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            parts = stripped.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                family = families.setdefault(parts[2], _Family())
                rest = parts[3] if len(parts) > 3 else ""
                if parts[1] == "TYPE":
                    family.type = rest
                else:
                    family.help = _unescape(rest)
            continue
        match = _SAMPLE.match(stripped)
        try:
            if not match:
                raise ValueError("not a sample line")
            labels = _parse_labels(match.group("labels") or "")
            value = _parse_value(match.group("value"))
        except ValueError as exc:
            raise EnvironmentProblem(
                f"{where}:{number}: cannot read the existing metrics ({exc}): {line!r}",
                hint="fix or delete the file; rollout rewrites it on the next run",
            ) from None
        samples.append(Sample(match.group("name"), tuple(sorted(labels.items())), value))
    return families, samples


def _parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        match = _LABEL.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"bad labels at {text[pos:]!r}")
        labels[match.group(1)] = _unescape(match.group(2))
        pos = match.end()
    return labels


def render(families: Mapping[str, _Family], samples: Iterable[Sample]) -> str:
    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)
    lines: list[str] = []
    for name in sorted(by_name):
        family = families.get(name, _Family())
        if family.help:
            help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
            lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {family.type}")
        for sample in sorted(by_name[name], key=lambda s: s.labels):
            labels = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sample.labels)
            series = f"{name}{{{labels}}}" if labels else name
            lines.append(f"{series} {format_value(sample.value)}")
    return "\n".join(lines) + "\n"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(path: Path) -> tuple[dict[str, _Family], list[Sample]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, []
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvironmentProblem(f"{path}: cannot read the metrics file: {exc}") from None
    return parse_textfile(text, str(path))


def _update(path: Path, change: Mapping[tuple[str, tuple[tuple[str, str], ...]], float],
            add: bool) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            families, samples = _read(path)
            current = {s.key: s.value for s in samples}
            for key, value in change.items():
                current[key] = current.get(key, 0.0) + value if add and key[0].endswith(
                    "_total") else value
            for name, (kind, help_text) in FAMILIES.items():
                families[name] = _Family(kind, help_text)
            merged = [Sample(name, labels, value) for (name, labels), value in current.items()]
            # Read by a metrics exporter running as another user, like the
            # textfile collector: not private, unlike the data directory.
            write_atomic(path, render(families, merged), mode=0o644)
    except OSError as exc:
        raise EnvironmentProblem(
            f"{path}: cannot write the metrics file: {exc}",
            hint="check that the directory exists and is writable, or drop --metrics-file",
        ) from None


def write_metrics(path: Path, samples: Iterable[Sample]) -> None:
    """Merge ``samples`` into the file at ``path``: each replaces the series of
    the same name and labels; every other series in the file is kept."""
    _update(path, {s.key: s.value for s in samples}, add=False)


@dataclass(frozen=True)
class RolloutMetrics:
    """What one finished rollout (or phoenix run) adds to its pool's series."""

    env: str
    role: str
    outcome: str
    duration: float
    nodes_replaced: int
    restores: int
    finished_at: float
    # (analysis name, verdict: passed, failed or inconclusive), one per verdict
    analysis_verdicts: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ConfigError(
                f"metrics: outcome {self.outcome!r} is not one of {', '.join(OUTCOMES)}")


def record_rollout(path: Path, result: RolloutMetrics) -> None:
    """Add one rollout to the file: counters grow by its counts, the duration
    gauge of its outcome is set, and on success the last-success time."""
    pool = {"env": result.env, "role": result.role}
    change = {
        Sample.of("rollout_duration_seconds", result.duration, outcome=result.outcome,
                  **pool).key: result.duration,
        Sample.of("rollout_nodes_replaced_total", 0, **pool).key: float(result.nodes_replaced),
        Sample.of("rollout_failures_total", 0, **pool).key:
            0.0 if result.outcome == "succeeded" else 1.0,
        Sample.of("rollout_restores_total", 0, **pool).key: float(result.restores),
    }
    for analysis, verdict in result.analysis_verdicts:
        key = Sample.of("rollout_analysis_verdicts_total", 0, analysis=analysis,
                        verdict=verdict, **pool).key
        change[key] = change.get(key, 0.0) + 1.0
    if result.outcome == "succeeded":
        key = Sample.of("rollout_last_success_timestamp_seconds", 0, **pool).key
        change[key] = result.finished_at
    _update(path, change, add=True)
