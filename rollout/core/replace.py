"""The decisions of ``rollout replace NODE``: pure.

- :func:`decide_replace`: a node that fails its smoke tests is replaced; a
  healthy one only with ``--force``.
- :func:`pool_image_id`: the replacement runs the image the pool runs now.
- :func:`image_is_suspect`: when the replacement failed its own smoke test,
  the image, not the node, is the likely cause. Decided on the replacements'
  :class:`rollout.model.FailureKind`, never on message text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rollout.core.state import Replacement
from rollout.model import FailureKind, Node, NodeState, SmokeResult


@dataclass(frozen=True)
class ReplaceVerdict:
    """What to do with the node: ``replace`` it or not, and why."""

    replace: bool
    reason: str


def decide_replace(node: str, smoke: SmokeResult, *, force: bool) -> ReplaceVerdict:
    """A sick node is replaced; a healthy one only with ``force``."""
    if not smoke.passed:
        return ReplaceVerdict(True, f"{node} failed its smoke tests: {smoke.summary}")
    if force:
        return ReplaceVerdict(True, f"{node} passed its smoke tests; replacing it anyway "
                                    "(--force)")
    return ReplaceVerdict(False, f"{node} passed its smoke tests ({smoke.summary}); nothing "
                                 "was replaced (pass --force to replace it anyway)")


def pool_image_id(nodes: Sequence[Node], node: Node) -> str:
    """The image the pool runs: the most common among its running nodes (ties:
    the named node's own image)."""
    counts = Counter(n.image_id for n in nodes if n.state is NodeState.RUNNING)
    if not counts:
        return node.image_id
    best = max(counts.values())
    leaders = sorted(i for i, c in counts.items() if c == best)
    return node.image_id if node.image_id in leaders else leaders[0]


def image_is_suspect(replacements: Sequence[Replacement]) -> bool:
    """Whether a replacement of the failed rollout failed on the new node's own
    smoke test (rather than on booting, the LB or a driver call)."""
    return any(r.failure is FailureKind.SMOKE for r in replacements)
