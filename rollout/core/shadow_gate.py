"""The dark-launch gate in the decision pass (``rollout.shadow``), pure.

When a new node passed its smoke test and before it joins the LB (ADDING),
the handler asks for one :class:`~rollout.core.state.RunShadow`: the engine
replays a sample of the pool's recent requests to it and to one old
in-service node and returns a verdict (:mod:`rollout.core.shadow`).

    verdict                               what happens
    ------------------------------------  --------------------------------------
    passed                                marked (``entered["shadow"]``): ADDING goes on
    inconclusive, ``inconclusive: pass``  the same, the reason journaled as a warning
    failed, or inconclusive (fail)        the replacement fails (FailureKind.SHADOW):
                                          its restore path destroys the new node, the
                                          old one stays in service

Every mismatch is journaled as an :class:`~rollout.events.AnalysisMeasured`
event of analysis ``shadow`` and the verdict as an
:class:`~rollout.events.AnalysisVerdict`, so ``rollout show`` prints them with
the analyses and the metrics file counts the verdict. A gate whose outcome was
never journaled (the controller was killed while it replayed) is not marked
and runs again on resume: replays are GET and HEAD only.
"""

from __future__ import annotations

from rollout.core.decision import Pass
from rollout.core.shadow import GATE, ShadowTarget, ShadowVerdict
from rollout.core.state import Outcome, RunShadow
from rollout.events import AnalysisMeasured, AnalysisVerdict
from rollout.model import FailureKind, Node, NodeState

#: The replacement's ``entered`` key once the gate let its new node through.
MARKER = "shadow"


def _baseline(run: Pass, i: int) -> Node | None:
    """The node to compare with: the replacement's own old node while it is in
    service, else another running in-service node, one on another image than
    the target first. Without one (``in_place`` has stopped every old node by
    its last replacement; ``rollout replace`` keeps the image), a node an
    earlier replacement put in service after it passed this gate."""
    rep = run.reps[i]
    found = []
    for name in [rep.old_name, *sorted(run.world.nodes)]:
        node = run.node(name)
        member = run.member(node.lb_target) if node is not None else None
        if (node is not None and name != rep.new_name and node.state is NodeState.RUNNING
                and member is not None and member.in_service):
            if name == rep.old_name or node.image_id != run.state.target.id:
                return node
            found.append(node)
    return found[0] if found else None


def admit(run: Pass, i: int, new: Node) -> bool:
    """True when the gate is off or passed for replacement ``i`` (go on);
    otherwise emit the replay (or fail the replacement when there is no old
    node to compare with) and return False."""
    shadow = run.settings.shadow
    rep = run.reps[i]
    if not shadow.enabled or MARKER in rep.entered:
        return True
    old = _baseline(run, i)
    if old is None:
        run.fail(i, FailureKind.SHADOW, f"shadow gate: no old node in service to compare "
                                        f"{new.name} with")
        return False
    target = ShadowTarget(new_node=new.name, new_address=new.address, old_node=old.name,
                          old_address=old.address, port=run.settings.service_port)
    run.wait_for(i, f"shadow gate: replaying requests to {new.name} and {old.name}")
    return run.act(i, RunShadow, new, target=target)


def journal(run: Pass, verdict: ShadowVerdict) -> None:
    """Each mismatch of ``verdict``, then the verdict, as events."""
    for m in verdict.mismatches:
        run.events.append(AnalysisMeasured(
            run.state.id, run.now, analysis=GATE, outcome="failed", result=None,
            detail=m.text(), measured_at=run.now))
    run.events.append(AnalysisVerdict(
        run.state.id, run.now, analysis=GATE, verdict=verdict.kind.value,
        measurements=verdict.replayed, reason=verdict.reason))


def apply(run: Pass, action: RunShadow, outcome: Outcome) -> None:
    """Fold the gate's outcome into replacement ``action.index``."""
    i = action.index
    run.progressed = True
    verdict = outcome.shadow
    if verdict is not None:
        journal(run, verdict)
    if verdict is not None and verdict.passes:
        rep = run.reps[i]
        run.set(i, entered={**rep.entered, MARKER: run.now}, waiting="")
        return
    reason = verdict.reason if verdict is not None else (
        f"shadow gate could not run: {outcome.error or 'no verdict'}")
    run.fail(i, FailureKind.SHADOW, f"{reason} (new node {action.node.name} never served)")


__all__ = ["MARKER", "admit", "apply", "journal"]
