"""The lab benches' results, in the one format bench/report.py reads.

A thin adapter over :func:`report.write_result`: each figure sits next to its
description, and the stamp (commit, date, host load) is the one taken when the
bench started, the commit whose code it loaded; the load at the end is kept
too, since the machine is shared.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from report import RESULTS, stamp, write_result


def host() -> dict[str, Any]:
    """The stamp for a bench starting now (commit, date, host and its load)."""
    return stamp()


def write(name: str, bench: str, figures: dict[str, Any], *, describe: dict[str, str],
          host_at_start: dict[str, Any], extra: dict[str, Any] | None = None,
          out: Path = RESULTS) -> Path:
    """Store the figures as the ``default`` entry of ``out/name.json``."""
    return write_result(name, "default", {
        "script": bench, "describe": describe, **figures, **(extra or {}),
        "load_at_end": [round(x, 2) for x in os.getloadavg()],
    }, results=out, stamped=host_at_start)
