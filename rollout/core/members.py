"""Put back in the LB the nodes a rollout expects to serve there but that are
missing from it, as a fresh load balancer (a HAProxy restarted after it died
knows only the empty slots of its config) has none of them.

Which node of a settled replacement serves follows from its phase alone, as
the journal holds it:

| phase              | the node that serves |
|--------------------|----------------------|
| PENDING, SKIPPED   | the old node         |
| RESTORED           | the old node         |
| DONE               | the new node         |

Replacements in flight are their phase handlers' business (each re-adds or
removes its own nodes). Only a node that runs and is absent from the LB is
added; a member an operator set to DRAIN or MAINT is left as it is.
"""

from __future__ import annotations

from rollout.core.decision import Pass
from rollout.core.state import AddMember, Phase, Replacement
from rollout.model import NodeState

#: Settled phases whose node must be in the LB, and which side of the
#: replacement that node is on (True: the new node).
SERVES: dict[Phase, bool] = {
    Phase.PENDING: False,
    Phase.SKIPPED: False,
    Phase.RESTORED: False,
    Phase.DONE: True,
}


def _serving(rep: Replacement) -> str:
    return rep.new_name if SERVES[rep.phase] else rep.old_name


def readd_missing(run: Pass) -> None:
    """Emit an AddMember for every settled replacement whose serving node runs
    but is not in the LB (one action per replacement, as for every action)."""
    if run.halted or run.state.stopping or run.state.aborting:
        return
    acting = run.busy | {a.index for a in run.actions}
    for i, rep in enumerate(run.reps):
        if rep.phase not in SERVES or i in acting:
            continue
        node = run.node(_serving(rep))
        if node is None or node.state is not NodeState.RUNNING:
            continue
        if run.member(node.lb_target) is None:
            run.act(i, AddMember, node)
