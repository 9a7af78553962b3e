"""Writing a bench's figures as self-describing JSON under bench/results/.

Every file carries what a reader (or a table generator) needs to judge the
figures: the commit they were measured on, the date, the host and its load
when the bench started and ended (the machine is shared), and a free-text
description of each figure next to it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def commit() -> str:
    """The short commit of the worktree, with ``-dirty`` when it has changes."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                              text=True, check=False)
        return proc.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def host() -> dict[str, Any]:
    """The host and its load average now (1, 5, 15 min) and its core count."""
    return {"name": platform.node(), "cpus": os.cpu_count(),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def write(name: str, bench: str, figures: dict[str, Any], *, describe: dict[str, str],
          host_at_start: dict[str, Any], extra: dict[str, Any] | None = None,
          out: Path = RESULTS) -> Path:
    """Write ``out/name.json``: the figures with their descriptions, the commit,
    the date (UTC) and the host's load at the start and the end."""
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "bench": bench,
        "commit": commit(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"at_start": host_at_start, "at_end": host()},
        "describe": describe,
        "figures": figures,
        **(extra or {}),
    }
    path = out / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path
