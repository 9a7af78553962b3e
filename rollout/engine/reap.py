"""``rollout reap``: remove nodes and LB members that rollouts created but no
journal owns any more.

A node is reaped when it carries a rollout id (nodes without one, such as the
lab's initial pool, are never touched) and that rollout is unknown to the
journal, or finished without keeping the node: the node is not the new node of
a DONE replacement, or it is the old node of one. Nodes of unfinished rollouts
are left to ``resume`` or ``abort``. A node that is in service in the LB is kept
and reported, whatever its labels say. An LB member is reaped when no node the
provider lists has its target and no unfinished rollout refers to it.

A node whose removal was begun but never finished (listed ``REMOVING``: its
controller died in between) is finished, whoever created it, unless an
unfinished rollout names it (its ``resume`` finishes it).

An orphan, a machine the provider can no longer list because its record is
gone but that still runs or holds resources (:meth:`Provider.orphans`), is
removed unless an unfinished rollout names it; each is reported as ``orphan``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rollout.config import Pool
from rollout.core.state import Phase, RolloutState
from rollout.errors import RolloutError
from rollout.events import Event, NodeReaped
from rollout.model import Member, Node, NodeState
from rollout.protocols import Clock, LoadBalancer, Provider
from rollout.store.journal import Journal


@dataclass(frozen=True)
class ReapReport:
    destroyed: tuple[str, ...]  # node names
    removed: tuple[str, ...]  # LB targets
    kept: tuple[tuple[str, str], ...]  # (node name, why it was kept)
    dry_run: bool
    reweighted: tuple[str, ...] = ()  # LB targets put back to their normal weight


def _owner(node: Node) -> str | None:
    return node.rollout_id or node.labels.get("rollout_id") or None


def _verdict(node: Node, rollouts: dict[str, RolloutState]) -> tuple[bool, str]:
    """(reap it?, why)."""
    rid = _owner(node)
    state = rollouts.get(rid or "")
    if state is None:
        return True, f"its rollout {rid} is not in the journal"
    if state.status.unfinished:
        return False, f"rollout {rid} is {state.status.value}; resume or abort it"
    retired = any(r.old_name == node.name and r.phase is Phase.DONE
                  for s in rollouts.values() for r in s.replacements)
    current = any(r.new_name == node.name and r.phase is Phase.DONE
                  for r in state.replacements)
    if current and not retired:
        return False, "a current pool node"
    return True, f"rollout {rid} ({state.status.value}) does not keep it"


def reap(pool: Pool, provider: Provider, lb: LoadBalancer, journal: Journal, clock: Clock,
         on_event: Callable[[Event], None], *, dry_run: bool = False) -> ReapReport:
    nodes = provider.list()
    members = {m.target: m for m in lb.members() if m.target}
    rollouts = {s.id: s for s in journal.rollouts(pool.env, pool.role)}
    busy_targets = {t for s in rollouts.values() if s.status.unfinished
                    for r in s.replacements for t in (r.old_target, r.new_target) if t}
    busy_names = {n for s in rollouts.values() if s.status.unfinished
                  for r in s.replacements for n in (r.old_name, r.new_name)}
    destroyed: list[str] = []
    removed: list[str] = []
    kept: list[tuple[str, str]] = []

    def act(kind: str, node: Node, member: Member | None, why: str) -> None:
        on_event(NodeReaped("", clock.now(), node=node.name if kind == "node" else node.target,
                            what=kind, reason=why, dry_run=dry_run))
        if dry_run:
            return
        # Intent first, as for every side effect of a rollout.
        step = journal.begin_step(None, None, f"reap_{kind}", node.name, clock.now(), why)
        started = clock.now()
        ok, error = True, ""
        try:
            if member is not None:
                lb.remove(node)
            if kind == "node":
                provider.destroy(node)
                provider.finish_removal(node)
        except Exception as exc:
            ok, error = False, str(exc)
        journal.finish_step(step, ok, error, clock.now(), clock.now() - started)
        if not ok:
            kept.append((node.name, f"reap failed: {error}"))

    for node in nodes:
        if node.state is NodeState.REMOVING:
            if node.name in busy_names:
                kept.append((node.name, "an unfinished rollout removes it; resume or abort it"))
            else:
                act("node", node, members.get(node.lb_target), "its removal was never finished")
                destroyed.append(node.name)
            continue
        if _owner(node) is None or node.state is NodeState.GONE:
            continue
        doomed, why = _verdict(node, rollouts)
        member = members.get(node.lb_target)
        if doomed and member is not None and member.in_service:
            doomed, why = False, f"in service in the LB ({why}); take it out of the LB first"
        if not doomed:
            kept.append((node.name, why))
            continue
        act("node", node, member, why)
        destroyed.append(node.name)
    listed = {n.name for n in nodes}
    for name, left in sorted(provider.orphans().items()):
        if name in listed:
            continue
        if name in busy_names:
            kept.append((name, f"an orphan ({left}) an unfinished rollout names; resume or "
                               "abort it"))
            continue
        if _reap_orphan(provider, journal, clock, on_event, name, left, dry_run):
            destroyed.append(name)
        else:
            kept.append((name, f"an orphan ({left}): its removal failed"))
    known = {n.lb_target for n in nodes if n.state is not NodeState.GONE}
    for target, member in members.items():
        if target in known or target in busy_targets:
            continue
        if member.in_service:
            kept.append((target, "no node has this target, but the LB says it serves"))
            continue
        stub = Node(name=member.slot, address="", role=pool.role, env=pool.env, image_id="",
                    image_version="", state=NodeState.GONE, created_at=0.0, target=target)
        act("member", stub, member, "no node has this target")
        removed.append(target)
    reweighted = _normal_weights(lb, journal, clock, on_event, pool, busy_targets, dry_run)
    done = [d for d in destroyed if d not in {k for k, _ in kept}]
    return ReapReport(tuple(done), tuple(removed), tuple(kept), dry_run, reweighted)


def _reap_orphan(provider: Provider, journal: Journal, clock: Clock,
                 on_event: Callable[[Event], None], name: str, left: str,
                 dry_run: bool) -> bool:
    """Remove one record-less orphan, journaled like every reap; True when done."""
    why = f"no record, but {left} is left"
    on_event(NodeReaped("", clock.now(), node=name, what="orphan", reason=why,
                        dry_run=dry_run))
    if dry_run:
        return True
    step = journal.begin_step(None, None, "reap_orphan", name, clock.now(), why)
    started = clock.now()
    ok, error = True, ""
    try:
        provider.remove_orphan(name)
    except RolloutError as exc:
        ok, error = False, str(exc)
    journal.finish_step(step, ok, error, clock.now(), clock.now() - started)
    return ok



def _normal_weights(lb: LoadBalancer, journal: Journal, clock: Clock,
                    on_event: Callable[[Event], None], pool: Pool, busy: set[str],
                    dry_run: bool) -> tuple[str, ...]:
    """Put back the normal weight of every member left at a canary weight by a
    rollout that is not running any more (rollout.core.canary)."""
    done: list[str] = []
    for member in lb.members():
        if not member.target or member.target in busy or member.weight == member.normal_weight:
            continue
        why = f"weight {member.weight}, normal {member.normal_weight}: a canary weight left over"
        on_event(NodeReaped("", clock.now(), node=member.target, what="weight", reason=why,
                            dry_run=dry_run))
        if dry_run:
            done.append(member.target)
            continue
        stub = Node(name=member.slot, address="", role=pool.role, env=pool.env, image_id="",
                    image_version="", state=NodeState.GONE, created_at=0.0, target=member.target)
        step = journal.begin_step(None, None, "reap_weight", member.slot, clock.now(), why)
        ok, error = True, ""
        try:
            lb.set_weight(stub, None)
        except Exception as exc:
            ok, error = False, str(exc)
        journal.finish_step(step, ok, error, clock.now(), 0.0)
        if ok:
            done.append(member.target)
    return tuple(done)
