"""``rollout replace NODE``: fix it or kick it.

1. Find the node in the environment's pools (``--role`` narrows the search).
2. Take the pool's lease (so no rollout runs meanwhile).
3. Run the role's smoke suite against the node, and collect forensics over
   SSH into ``<data>/evidence/forensics/`` (failed units, recent journal,
   disk, memory), whatever the smoke result.
4. :func:`rollout.core.replace.decide_replace`: a node that passes is left
   alone unless ``force``; otherwise it is replaced, through the controller
   like any rollout (and its post-run path), by a node of the image the pool
   runs now.
5. When the replacement fails its own smoke test (a failure of kind
   :attr:`~rollout.model.FailureKind.SMOKE`), the node was probably not the
   problem: the error says that the image is the likely cause.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rollout import names
from rollout.app.session import Session
from rollout.app.workspace import Workspace
from rollout.core.replace import (
    ReplaceVerdict,
    decide_replace,
    image_is_suspect,
    pool_image_id,
)
from rollout.drivers.forensics import ForensicsReport, collect_forensics
from rollout.engine.controller import RolloutResult
from rollout.errors import ConfigError, NotFoundError, RolloutFailed
from rollout.events import Event
from rollout.model import Image, Node, NodeState, SmokeResult
from rollout.protocols import Clock

KIND = "replace"


@dataclass(frozen=True)
class ReplaceReport:
    node: str
    role: str
    smoke: SmokeResult
    forensics: ForensicsReport
    verdict: ReplaceVerdict
    image: Image
    result: RolloutResult | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "event": "replace_report", "node": self.node, "role": self.role,
            "smoke_passed": self.smoke.passed, "smoke_summary": self.smoke.summary,
            "smoke_junit": self.smoke.junit_path, "forensics": str(self.forensics.directory),
            "failed_units": list(self.forensics.failed_units),
            "replaced": self.result is not None, "reason": self.verdict.reason,
            "image": self.image.id,
        }
        if self.result is not None:
            data.update(rollout_id=self.result.id, new_nodes=list(self.result.replaced))
        return data


def find_node(ws: Workspace, name: str, role: str | None) -> tuple[str, Node]:
    """The pool role and the Node called ``name`` (NotFoundError naming the pools)."""
    names.name(name, "node name", "NODE")
    roles = [role] if role is not None else sorted(ws.env.pools)
    for candidate in roles:
        for node in ws.drivers(candidate).provider.list():
            if node.name == name:
                return candidate, node
    where = f"pool {role!r}" if role else f"the pools of {ws.env.name} ({', '.join(roles)})"
    raise NotFoundError(f"node {name}: not found in {where}",
                        hint="see `rollout lab status` for the node names")


def replace_node(ws: Workspace, name: str, *, role: str | None = None, force: bool = False,
                 wait_lock: bool = False, on_event: Callable[[Event], None] = lambda e: None,
                 stop_requested: Callable[[], bool] = lambda: False,
                 clock: Clock | None = None) -> ReplaceReport:
    """Smoke-test ``name``, keep forensics, and replace it if it is sick (or forced)."""
    role, _ = find_node(ws, name, role)
    with Session(ws, role, clock=clock, on_event=on_event,
                 stop_requested=stop_requested) as session, session.lease(wait=wait_lock):
        node, image = _current(session, name)
        smoke = session.drivers.smoke.run(node, image)
        forensics = collect_forensics(node.name, session.drivers.provider.ssh(node),
                                      ws.data, now=session.clock.now())
        verdict = decide_replace(node.name, smoke, force=force)
        if not verdict.replace:
            return ReplaceReport(node.name, role, smoke, forensics, verdict, image)
        try:
            result = session.run(image, only=[node.name], kind=KIND)
        except RolloutFailed as exc:
            raise _explain(session, exc, node.name, image) from None
        return ReplaceReport(node.name, role, smoke, forensics, verdict, image, result)


def _current(session: Session, name: str) -> tuple[Node, Image]:
    nodes = session.drivers.provider.list()
    node = next((n for n in nodes if n.name == name), None)
    if node is None:
        raise NotFoundError(f"node {name}: gone from pool {session.pool.role} meanwhile")
    if node.state is not NodeState.RUNNING:
        raise ConfigError(
            f"node {name} is {node.state.value}, so it cannot be smoke-tested or replaced "
            "through a rollout",
            hint=f"`rollout reap --role {session.pool.role}` removes leftovers; `rollout lab "
            "up` restarts a lab node whose machine died")
    image = session.drivers.images.get(pool_image_id(nodes, node))
    return node, image


def _explain(session: Session, exc: RolloutFailed, node: str, image: Image) -> RolloutFailed:
    """Say that the image is the likely cause when the replacement's own smoke failed."""
    latest = session.journal.history(session.pool.env, session.pool.role, limit=1)
    if latest and image_is_suspect(latest[0].state.replacements):
        return RolloutFailed(
            f"the replacement of {node} also failed its smoke tests, so the image "
            f"{image.id} ({image.version}), not the node, is the likely cause; {node} was "
            f"restored and nothing else changed ({exc.message})",
            hint=f"check the image: bake a fixed version and `rollout run --role "
            f"{session.pool.role} --version V`; the forensics of {node} are under "
            f"{session.ws.data.evidence / 'forensics'}")
    return exc


__all__ = ["KIND", "ReplaceReport", "ReplaceVerdict", "decide_replace", "find_node",
           "replace_node"]
