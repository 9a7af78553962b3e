"""``rollout lab ...``: the embedded lab, for the CLI (a thin layer over
:mod:`rollout.backends.lab.env`, which does the work)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rollout.app.session import open_journal
from rollout.app.workspace import Workspace
from rollout.backends.lab import env as lab_env
from rollout.backends.lab.base import ensure_base
from rollout.backends.lab.env import LabStatus
from rollout.backends.lab.system import require_programs, require_root
from rollout.errors import UnfinishedRolloutError


def lab_up(ws: Workspace, *, nodes: int | None = None,
           on_event: Callable[[str], None] = lambda m: None,
           cancel: Callable[[], bool] = lambda: False) -> LabStatus:
    """Build or converge the lab: base image, network, HAProxy, the pools.
    ``cancel`` is the stop flag (SIGINT/SIGTERM): the nodes this call started
    are removed before it raises ``Interrupted``."""
    require_root("rollout lab up")
    held = _unfinished(ws)
    status = lab_env.lab_up(ws.project, ws.env, ws.data, nodes=nodes, on_event=on_event,
                            cancel=cancel, vault=ws.vault, hold=frozenset(held))
    if held:
        role, rid = sorted(held.items())[0]
        raise UnfinishedRolloutError(
            f"lab up: pool {ws.env.name}/{role} has the unfinished rollout {rid}; its nodes "
            "were left alone (the network and HAProxy are up)",
            hint=f"run `rollout resume --role {role}` or `rollout abort {rid}`, then "
                 "`rollout lab up` again")
    return status


def _unfinished(ws: Workspace) -> dict[str, str]:
    """Role -> id of the unfinished rollout, for the lab's pools that have one:
    lab up must not touch a node such a rollout owns."""
    journal = open_journal(ws)
    try:
        found = {}
        for pool in lab_env.lab_pools(ws.env):
            state = journal.unfinished(pool.env, pool.role)
            if state is not None:
                found[pool.role] = state.id
        return found
    finally:
        journal.close()


def lab_prepare(ws: Workspace) -> Path:
    """Build the base image cache once (debootstrap); returns its path."""
    require_root("rollout lab prepare")
    require_programs(["debootstrap"])
    return ensure_base(ws.data)


def lab_down(ws: Workspace, *, on_event: Callable[[str], None] = lambda m: None) -> None:
    """Remove everything the lab created (nodes, network, NAT rules, HAProxy)."""
    require_root("rollout lab down")
    lab_env.lab_down(ws.env, ws.data, on_event=on_event)


def lab_status(ws: Workspace) -> LabStatus:
    """The nodes, their images, their LB state and the frontend URL."""
    return lab_env.lab_status(ws.env, ws.data)


__all__ = ["LabStatus", "lab_down", "lab_prepare", "lab_status", "lab_up"]
