"""Letting the lab settle between bench commands, so one command's tail never
runs on the next one's time: no lab node of the previous command still
stopping, no extra machine, no nspawn exiting."""

from __future__ import annotations

import time
from pathlib import Path

from rollout.backends.lab.records import LabContext, read_records


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has exited: its parent just has not reaped it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def node_pids(lab: LabContext) -> dict[str, int]:
    """Each recorded node's nspawn pid, to check later that it has exited."""
    return {r.name: r.pid for r in read_records(lab) if r.pid is not None}


def settle(lab: LabContext, pool_size: int, seen: dict[str, int],
           timeout: float = 180.0) -> float:
    """Wait until the lab holds exactly ``pool_size`` node records, none being
    removed, no half-deleted node directory is left, and every nspawn in
    ``seen`` (name -> pid, from :func:`node_pids`) whose node is gone has
    exited. Returns the seconds waited; raises RuntimeError after ``timeout``."""
    started = time.monotonic()
    while True:
        recs = read_records(lab)
        names = {r.name for r in recs}
        busy = [r.name for r in recs if r.removing]
        if len(recs) != pool_size:
            busy.append(f"{len(recs)} records")
        if lab.nodes_dir.is_dir():
            busy += [p.name for p in lab.nodes_dir.iterdir() if p.name.startswith(".removing-")]
        busy += [f"{n} (pid {pid})" for n, pid in seen.items() if n not in names and _alive(pid)]
        waited = time.monotonic() - started
        if not busy:
            return waited
        if waited > timeout:
            raise RuntimeError(f"the lab did not settle within {timeout:.0f}s: {busy}")
        time.sleep(0.2)
