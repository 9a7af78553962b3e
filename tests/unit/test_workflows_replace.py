"""`rollout replace` decisions: fix it or kick it, and which image is to blame."""

from __future__ import annotations

import pytest

from rollout.app.replace import decide_replace, image_is_suspect, pool_image_id
from rollout.model import Node, NodeState, SmokeResult

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


@pytest.mark.parametrize(
    ("error", "suspect"),
    [
        ("smoke test of web-r1234567-0 failed: 1 failed", True),
        ("smoke test of web-r1234567-0 took 99.0s, more than timeouts.smoke 90s", True),
        ("smoke test of web-1 failed: x", False),  # the old node itself, not the new one
        ("new node web-r1234567-0 was not ready within timeouts.ready 60s", False),
        ("", False),
    ],
)
def test_the_image_is_suspected_only_when_the_new_node_failed_its_smoke(
        error: str, suspect: bool) -> None:
    assert image_is_suspect("web-1", error) is suspect


def node(name: str, image_id: str, state: NodeState = NodeState.RUNNING) -> Node:
    return Node(name=name, address="10.0.0.1", role="web", env="lab", image_id=image_id,
                image_version="1", state=state, created_at=0.0)


def test_the_pool_image_is_the_majority_of_running_nodes() -> None:
    nodes = [node("a", "web-2"), node("b", "web-2"), node("c", "web-1"),
             node("d", "web-1", NodeState.STOPPED), node("e", "web-1", NodeState.STOPPED)]
    assert pool_image_id(nodes, nodes[2]) == "web-2"
    # A tie keeps the named node's own image.
    assert pool_image_id(nodes[1:4], nodes[2]) == "web-1"
