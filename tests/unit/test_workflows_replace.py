"""`rollout replace` decisions: fix it or kick it, and which image is to blame."""

from __future__ import annotations

import pytest

from rollout.core.replace import decide_replace, image_is_suspect, pool_image_id
from rollout.core.state import Phase, Replacement, RestoreReason
from rollout.model import FailureKind, Node, NodeState, SmokeResult

PASS = SmokeResult(True, 1.0, "5 passed")
FAIL = SmokeResult(False, 1.0, "1 failed, 4 passed")


@pytest.mark.parametrize(
    ("smoke", "force", "replace", "fragment"),
    [
        (PASS, False, False, "nothing was replaced (pass --force"),
        (PASS, True, True, "replacing it anyway (--force)"),
        (FAIL, False, True, "failed its smoke tests: 1 failed"),
        (FAIL, True, True, "failed its smoke tests"),
    ],
)
def test_decide_replace(smoke: SmokeResult, force: bool, replace: bool, fragment: str) -> None:
    verdict = decide_replace("web-1", smoke, force=force)
    assert verdict.replace is replace
    assert fragment in verdict.reason


def failed(kind: FailureKind | None) -> Replacement:
    return Replacement(index=0, batch=0, old_name="web-1", old_target="10.0.0.1",
                       old_image_id="web-1.0", new_name="web-r1234567-0", phase=Phase.RESTORED,
                       error="whatever the message says", failure=kind,
                       restore_reason=RestoreReason.FAILED if kind else None)


@pytest.mark.parametrize(
    ("kind", "suspect"),
    [
        (FailureKind.SMOKE, True),  # failed, or ran past timeouts.smoke
        (FailureKind.BOOT, False),
        (FailureKind.LB, False),
        (FailureKind.GONE, False),
        (FailureKind.DRIVER, False),
        (None, False),  # restored for another reason (abort, canary), or never failed
    ],
)
def test_the_image_is_suspected_only_when_the_new_node_failed_its_smoke(
        kind: FailureKind | None, suspect: bool) -> None:
    assert image_is_suspect([failed(None), failed(kind)]) is suspect


def node(name: str, image_id: str, state: NodeState = NodeState.RUNNING) -> Node:
    return Node(name=name, address="10.0.0.1", role="web", env="lab", image_id=image_id,
                image_version="1", state=state, created_at=0.0)


def test_the_pool_image_is_the_majority_of_running_nodes() -> None:
    nodes = [node("a", "web-2"), node("b", "web-2"), node("c", "web-1"),
             node("d", "web-1", NodeState.STOPPED), node("e", "web-1", NodeState.STOPPED)]
    assert pool_image_id(nodes, nodes[2]) == "web-2"
    # A tie keeps the named node's own image.
    assert pool_image_id(nodes[1:4], nodes[2]) == "web-1"
