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
from rollout.core.state import AddMember, Phase
from rollout.model import NodeState

#: Settled phases whose node must be in the LB, and which side of the
#: replacement that node is on (True: the new node).
SERVES: dict[Phase, bool] = {
    Phase.PENDING: False,
    Phase.SKIPPED: False,
    Phase.RESTORED: False,
    Phase.DONE: True,
}


def readd_missing(run: Pass) -> None:
    """Emit an AddMember for every settled replacement whose serving node runs
    but is not in the LB (one action per replacement, as for every action)."""
    if run.halted or run.state.stopping or run.state.aborting:
        return
    acting = run.busy | {a.index for a in run.actions}
    # This looks at every replacement of the pool in every pass, so it reads
    # the world's maps directly: a node that is not RUNNING (GONE and
    # REMOVING included) is skipped, as Pass.node would hide those anyway.
    nodes, members = run.world.nodes, run.world.members
    for i, rep in enumerate(run.reps):
        new_serves = SERVES.get(rep.phase)
        if new_serves is None or i in acting:
            continue
        node = nodes.get(rep.new_name if new_serves else rep.old_name)
        if node is None or node.state is not NodeState.RUNNING:
            continue
        target = node.lb_target
        if not target or target not in members:
            run.act(i, AddMember, node)
