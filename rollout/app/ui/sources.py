"""What the dashboard shows, gathered read-only into JSON-ready dicts.

:class:`Sources` is where the data comes from: the workspace's drivers and a
journal opened with ``read_only=True`` (:class:`WorkspaceSources`), or, in
tests, a fake world. :func:`snapshot` turns them into one dict the views and
the ``/api/state`` endpoint share. Only reading methods of the drivers are
called (``Provider.list``, ``LoadBalancer.members``, ``ImageStore.list``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rollout.app.history import rollout_summary
from rollout.app.ui.timeline import capacity_series, node_timeline
from rollout.app.workspace import Workspace
from rollout.errors import NotFoundError, RolloutError
from rollout.model import Image
from rollout.protocols import Clock, LoadBalancer, Provider
from rollout.store.journal import Journal


@dataclass(frozen=True)
class PoolSource:
    """One pool's reading drivers."""

    role: str
    provider: Provider
    lb: LoadBalancer


class Sources(Protocol):
    """Where the dashboard reads from."""

    env: str
    clock: Clock

    def pools(self) -> list[PoolSource]: ...

    def images(self) -> list[Image]: ...

    def journal(self) -> Journal:
        """The journal, read-only; NotFoundError when there is none yet."""
        ...


class WorkspaceSources:
    """The environment of a workspace: its pools' drivers and its journal."""

    def __init__(self, ws: Workspace, clock: Clock) -> None:
        self.ws = ws
        self.env = ws.env.name
        self.clock = clock

    def pools(self) -> list[PoolSource]:
        found: list[PoolSource] = []
        for role in sorted(self.ws.env.pools):
            drivers = self.ws.drivers(role)
            found.append(PoolSource(role, drivers.provider, drivers.lb))
        return found

    def images(self) -> list[Image]:
        return self.ws.image_store().list()

    def journal(self) -> Journal:
        return Journal(self.ws.data.journal, read_only=True)


@contextmanager
def _journal(sources: Sources) -> Iterator[Journal | None]:
    try:
        journal = sources.journal()
    except NotFoundError:
        yield None
        return
    try:
        yield journal
    finally:
        journal.close()


def pool_view(pool: PoolSource, now: float) -> dict[str, Any]:
    """A pool's nodes with their image, age and LB state; an error instead
    when the pool cannot be read (the lab is down, the LB unreachable)."""
    try:
        nodes = pool.provider.list()
        members = {m.target: m for m in pool.lb.members() if m.target}
    except RolloutError as exc:
        return {"role": pool.role, "error": str(exc), "nodes": []}
    rows = []
    for node in sorted(nodes, key=lambda n: n.name):
        member = members.get(node.lb_target)
        rows.append({
            "name": node.name, "address": node.address, "image": node.image_id,
            "version": node.image_version, "state": node.state.value,
            "age": max(0.0, now - node.created_at),
            "lb": f"{member.admin.value}/{member.health.value}" if member else "not in LB",
            "in_service": bool(member and member.in_service),
        })
    return {"role": pool.role, "error": None, "nodes": rows,
            "in_service": sum(1 for r in rows if r["in_service"])}


def junit_summary(path: str) -> dict[str, Any]:
    """Tests, failures and errors of a JUnit file; ``missing`` when unreadable."""
    try:
        root = ET.parse(Path(path)).getroot()
    except (OSError, ET.ParseError):
        return {"path": path, "missing": True}
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, "0") or 0) for s in suites)
             for k in ("tests", "failures", "errors")}
    return {"path": path, "missing": False, **total}


def image_view(image: Image) -> dict[str, Any]:
    manifest = image.manifest or {}
    evidence = [e for e in manifest.get("evidence", []) if isinstance(e, dict)]
    return {
        "id": image.id, "role": image.role, "version": image.version,
        "created_at": image.created_at, "verified": image.verified,
        "passed_envs": sorted(manifest.get("passed_envs", [])),
        "promotions": [p for p in manifest.get("promotions", []) if isinstance(p, dict)],
        "evidence": [{"env": e.get("env"), "rollout_id": e.get("rollout_id"),
                      "at": e.get("at"), "summary": e.get("summary", e.get("smoke", "")),
                      "junit": [junit_summary(str(j)) for j in e.get("junit", [])]}
                     for e in evidence],
    }


def live_rollouts(journal: Journal | None, env: str, roles: list[str],
                  now: float) -> list[dict[str, Any]]:
    """Each pool's unfinished rollout, else its last one, with a per-node
    timeline of its steps and its capacity over time."""
    if journal is None:
        return []
    found = []
    for role in roles:
        state = journal.unfinished(env, role)
        if state is None:
            last = journal.history(env, role, limit=1)
            state = last[0].state if last else None
        if state is None:
            continue
        steps = journal.steps(state.id)
        events = journal.events(state.id)
        found.append(rollout_summary(state) | {
            "live": state.status.unfinished,
            "floor": state.settings.min_healthy_nodes,
            "pool_size": state.settings.pool_size,
            "nodes": node_timeline(state, steps, now),
            "capacity": capacity_series(state, events, now),
        })
    return found


def snapshot(sources: Sources, *, history_limit: int = 20) -> dict[str, Any]:
    """Everything the page shows, as one JSON-ready dict."""
    now = sources.clock.now()
    pools = sources.pools()
    try:
        images = [image_view(i) for i in sources.images()]
        images_error = None
    except RolloutError as exc:
        images, images_error = [], str(exc)
    with _journal(sources) as journal:
        roles = [p.role for p in pools]
        rollouts = live_rollouts(journal, sources.env, roles, now)
        history = [] if journal is None else [
            rollout_summary(r.state) for r in journal.history(sources.env, limit=history_limit)]
    return {
        "env": sources.env, "now": now,
        "pools": [pool_view(p, now) for p in pools],
        "rollouts": rollouts, "history": history,
        "images": sorted(images, key=lambda i: -float(i["created_at"])),
        "images_error": images_error,
    }
