"""Parsing of durations ("90s", "5m", "1h30m", "2d") and capacity floors ("75%", 3)."""

from __future__ import annotations

import math
import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``"1h30m"``. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not text:
            raise ValueError("expected a duration such as 30s, 5m or 1h")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text):
                raise ValueError(f"{value!r} is not a duration such as 30s, 5m or 1h")
    else:
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be zero or more")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def resolve_floor(floor: int | str, pool_size: int) -> int:
    """The minimum number of in-service nodes: an absolute count or a percentage
    of the pool, rounded up (a floor of 75% of 3 nodes is 3, never 2)."""
    if isinstance(floor, int):
        return floor
    percent = float(floor.rstrip("%"))
    return math.ceil(pool_size * percent / 100.0 - 1e-9)
