"""What ``rollout rollback`` returns a pool to, decided from the journal: pure.

Within a blue-green rollout's ``scale_down_delay`` it is the warm blue pool
(one switch back, :func:`rollout.core.decide.request_rollback`); otherwise it
is the image the pool's last succeeded rollout replaced, rolled out through
the pool's normal safe path. Phoenix and ``rollout replace`` runs do not
count: they replaced nodes on the image they already ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rollout.core.bluegreen import rollback_refusal
from rollout.core.state import RolloutState, RolloutStatus
from rollout.core.window import replaced_image as _replaced


@dataclass(frozen=True)
class RollbackTarget:
    """``switch_back``: the warm blue pool of unfinished rollout ``rollout_id``;
    ``previous_image``: a rollout to ``image_id``, which ``rollout_id`` replaced."""

    how: str  # "switch_back" | "previous_image"
    rollout_id: str
    image_id: str
    nodes: tuple[str, ...] = ()  # switch_back: the warm blue nodes

    def to_json(self) -> dict[str, object]:
        return {"how": self.how, "rollout_id": self.rollout_id, "image_id": self.image_id,
                "nodes": list(self.nodes)}

    def text(self) -> str:
        if self.how == "switch_back":
            return (f"switch back to the warm blue pool of {self.rollout_id} "
                    f"({', '.join(self.nodes)}, image {self.image_id})")
        return f"roll out {self.image_id}, which rollout {self.rollout_id} replaced"


def rollback_target(rollouts: Sequence[RolloutState]) -> RollbackTarget | None:
    """Where a rollback of the pool would go, given its rollouts (newest
    first), or None when there is nothing to go back to."""
    for state in rollouts:
        if state.status.unfinished:
            if rollback_refusal(state) is None:
                blue = tuple(r.old_name for r in state.replacements)
                return RollbackTarget("switch_back", state.id, _replaced(state), blue)
            continue
        w = state.window
        if (state.status is RolloutStatus.FAILED and w.failed and w.rollback_to
                and not w.rolled_back_by):
            # Its post-rollout window failed and no rollback ran yet (a kill).
            return RollbackTarget("previous_image", state.id, w.rollback_to)
        # A rollback (an automatic one after a failed window) replaced an image too.
        if state.status is RolloutStatus.SUCCEEDED and state.kind in ("rollout", "rollback"):
            image = _replaced(state)
            if image and image != state.target.id:
                return RollbackTarget("previous_image", state.id, image)
    return None


def rollback_to(state: RolloutState) -> str | None:
    """For ``history``: the image a rollback right after ``state`` returns to
    (a succeeded rollout's replaced image, or a warm blue pool's), else None."""
    found = rollback_target([state])
    return found.image_id if found is not None else None


__all__ = ["RollbackTarget", "rollback_target", "rollback_to"]
