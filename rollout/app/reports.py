"""What a finished rollout leaves behind besides the journal: the evidence in
the image store, the JUnit file for CI, the Prometheus metrics.

Called only from the session's post-run path (:meth:`rollout.app.session.Session`),
so every command that runs a controller reports the same way, under the lease.
Each function takes the rollout's journaled state, never a message.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from rollout.app.metrics import RolloutMetrics, record_rollout
from rollout.core.promotion import record_pass
from rollout.core.state import Phase, RolloutState
from rollout.errors import NotFoundError
from rollout.fsio import write_atomic
from rollout.paths import DataDir
from rollout.protocols import ImageStore


def new_nodes(state: RolloutState) -> list[str]:
    """The new nodes the rollout started, in replacement order."""
    return [r.new_name for r in state.replacements if r.new_name]


def junit_files(data: DataDir, state: RolloutState) -> list[Path]:
    """The smoke gate's JUnit files of the rollout's new nodes that exist."""
    evidence = data.pool_evidence(state.env, state.role)
    return [evidence / f"{n}.xml" for n in new_nodes(state) if (evidence / f"{n}.xml").is_file()]


def write_junit(data: DataDir, state: RolloutState, path: Path) -> Path:
    """One JUnit file with the smoke suites of every node this rollout started
    (what Jenkins' ``junit`` step publishes). Written even when none ran."""
    root = ET.Element("testsuites", name=f"rollout {state.id}")
    evidence = data.pool_evidence(state.env, state.role)
    for node in new_nodes(state):
        source = evidence / f"{node}.xml"
        if not source.is_file():
            continue
        try:
            tree = ET.parse(source)
        except ET.ParseError:
            continue
        found = tree.getroot()
        suites = [found] if found.tag == "testsuite" else list(found.iter("testsuite"))
        for suite in suites:
            suite.set("name", f"smoke {state.role} on {node}")
            root.append(suite)
    # Published by CI (another user, often): not private like the data directory.
    write_atomic(path, ET.tostring(root, encoding="utf-8", xml_declaration=True), mode=0o644)
    return path


def write_metrics(state: RolloutState, path: Path, *, now: float,
                  verdicts: Sequence[tuple[str, str]] = ()) -> None:
    """Merge the rollout's series into the textfile at ``path``
    (:mod:`rollout.app.metrics`); ``verdicts`` are its analyses' (analysis, verdict)."""
    finished = state.finished_at or now
    record_rollout(path, RolloutMetrics(
        env=state.env, role=state.role, outcome=state.status.value,
        duration=max(0.0, finished - state.started_at),
        nodes_replaced=sum(1 for r in state.replacements if r.phase is Phase.DONE),
        restores=sum(1 for r in state.replacements if r.phase is Phase.RESTORED),
        finished_at=finished,
        analysis_verdicts=tuple(verdicts),
    ))


def record_evidence(images: ImageStore, data: DataDir, state: RolloutState, *,
                    replaced: int, now: float) -> None:
    """Note in the image store that the rollout's image passed this
    environment, with the rollout id and the JUnit files as evidence."""
    junits = [str(p) for p in junit_files(data, state)]
    summary = f"{replaced} node(s) passed the smoke gate in rollout {state.id}"
    with suppress(NotFoundError):  # an image deleted meanwhile has no evidence to keep
        images.update_manifest(state.target.id, lambda m: record_pass(
            m, state.env, state.id, junits, summary, at=now))
