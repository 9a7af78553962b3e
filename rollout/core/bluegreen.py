"""Blue-green: a whole green pool beside the blue one, all traffic switched at
once, blue kept warm for ``scale_down_delay``, then retired.

Each replacement pairs one blue (old) node with one green (new) node and
moves through the surge phases up to its smoke test, then::

    phase    what the controller does / waits for               exit (observed)     next
    -------  -------------------------------------------------  ------------------  --------
    SMOKING  smoke.run(green)                                   the suite passed    STAGED
    STAGED   lb.stage(green): in the LB, DRAIN, checks on       every green UP and  (switch)
             (takes no traffic); waits for the whole green pool  STAGED
    (switch) side := green, journaled; then one lb.switch(ready  LB all green        WARM
             = greens, drain = blues), repeated until the LB
             is all green
    WARM     blue drained and warm, out of service, until        scale_down_delay    RETIRING
             switched_at + scale_down_delay                      passed
    RETIRING lb.remove(blue), destroy(blue) (as for surge)       blue gone           DONE

Analyses around the switch (``blue_green.pre_switch_analysis`` and
``post_switch_analysis``, :mod:`rollout.core.switch_checks`) hold the switch
until the pre-switch ones passed, and hold WARM (blue kept) until the
post-switch ones passed; a failure of either fails the rollout like any other.

The side (:class:`~rollout.core.bluegreen_state.BlueGreen`) is rollout-level
state, journaled before the switch action starts. Every pass reconciles the LB
with it first, before any replacement moves: when a replacement restores (a
failure, an abort, a signal, ``rollout rollback``) the side goes back to blue
and one switch puts every blue node back in service and drains every green
one, and only then do the restore handlers take the green nodes away. So the
pool converges to all blue or all green, never a mix. On resume, the first
pass says which side it keeps and why (:class:`~rollout.events.SideChosen`):
a switch to green that was under way completes only if every green node is
still UP; otherwise the rollout fails back to blue.

Pure, like the rest of the core.
"""

from __future__ import annotations

from dataclasses import replace

from rollout.core import switch_checks
from rollout.core.bluegreen_state import BlueGreen, Side
from rollout.core.decision import Pass
from rollout.core.state import (
    MAX_RETRIES,
    Outcome,
    Phase,
    Replacement,
    RestoreReason,
    RolloutState,
    StageMember,
    SwitchTraffic,
)
from rollout.events import RetryScheduled, SideChosen, TrafficSwitched
from rollout.model import Admin, FailureKind, Health, Node

__all__ = ["BlueGreen", "Side", "rollback_refusal", "staged", "step", "switch_outcome", "warm"]

# Replacements whose pair (blue and green) the switch may move.
_PAIRED = frozenset({Phase.STAGED, Phase.WARM, Phase.RESTORING})


def staged(run: Pass, i: int, rep: Replacement) -> bool:
    """Green in the LB, drained with checks on, until HAProxy sees it UP."""
    new = run.node(rep.new_name)
    if new is None:
        return run.fail(i, FailureKind.GONE,
                        f"green node {rep.new_name} disappeared before the switch")
    member = run.member(new.lb_target)
    if member is None or member.admin is Admin.MAINT:
        return run.act(i, StageMember, new)
    if member.health is Health.UP:
        if "up" not in rep.entered:
            run.record(i, "lb_rise", run.since(rep, Phase.STAGED))
            run.set(i, entered={**rep.entered, "up": run.now})
        analysis = switch_checks.pre_switch_pending(run)
        if analysis is not None and _all_staged_up(run):
            return run.wait_for(i, f"pre-switch analysis {analysis} of the green pool")
        return run.wait_for(i, "green UP and drained: waiting for the whole green pool")
    deadline = rep.phase_started + run.timeouts.lb_up
    if run.now > deadline:
        return run.fail(i, FailureKind.LB, f"green node {rep.new_name} was not UP in the LB "
                        f"within timeouts.lb_up {run.timeouts.lb_up:g}s (health {member.health})")
    return run.wait_for(i, f"{rep.new_name} rising in the LB (drained)", deadline)


def warm(run: Pass, i: int, rep: Replacement) -> bool:
    """Blue stays warm (drained, out of service) for scale_down_delay."""
    bg = run.bg or BlueGreen()
    analysis = switch_checks.post_switch_pending(run)
    if analysis is not None:
        # Blue stays warm until the post-switch analyses passed, however long.
        return run.wait_for(i, f"post-switch analysis {analysis} of green; blue "
                               f"{rep.old_name} warm")
    until = (bg.switched_at if bg.switched_at is not None else run.now) + \
        run.settings.scale_down_delay
    if run.now < until:
        return run.wait_for(i, f"blue {rep.old_name} warm for `rollout rollback` "
                               f"(scale_down_delay {run.settings.scale_down_delay:g}s)", until)
    run.move(i, Phase.RETIRING)
    return True


def step(run: Pass) -> None:
    """Decide the side and reconcile the LB with it, before any replacement
    moves; while a switch is due, every replacement is held for this pass."""
    bg = run.bg
    if bg is None or run.halted:
        return
    resumed = bg.resumed
    back = _why_blue(run, bg)
    if bg.side is Side.GREEN and back:
        bg = _choose(run, bg, Side.BLUE, back)
    elif (bg.side is Side.BLUE and not back and _all_staged_up(run)
            and switch_checks.before_switch(run, bg)):
        bg = _choose(run, bg, Side.GREEN,
                     "every green node passed its smoke test and is UP (drained) in the LB")
    elif bg.resumed:
        _say(run, bg.side, _why_kept(run, bg))
    run.bg = bg = replace(bg, resumed=False)
    ready, drain = _to_switch(run, bg.side)
    if resumed and not (ready or drain):
        # The LB matches the side, but what a switch derives from it (a preview
        # kept on the idle side) may lag behind a kill mid-switch: one
        # idempotent switch re-asserts the side (docs/BLUE-GREEN.md).
        ready = _on_side(run, bg.side)
    if ready or drain:
        run.held.update(range(len(run.reps)))
        if run.busy or run.now < bg.retry_at:
            return
        first = run.reps[0]
        run.actions.append(SwitchTraffic(
            index=first.index, attempt=first.attempt, phase=first.phase,
            node=(ready + drain)[0], ready=ready, drain=drain))
        return
    if bg.side is Side.GREEN:
        staged_now = [r.index for r in run.reps if r.phase is Phase.STAGED]
        if staged_now and bg.switched_at is None:
            run.bg = replace(bg, switched_at=run.now)
            run.events.append(TrafficSwitched(
                run.state.id, run.now, side=Side.GREEN.value,
                nodes=tuple(run.reps[i].new_name for i in staged_now)))
        for i in staged_now:
            run.move(i, Phase.WARM)
        switch_checks.after_switch(run)


def switch_outcome(run: Pass, action: SwitchTraffic, outcome: Outcome) -> bool:
    """Fold a switch's result: retried with backoff, the rollout halts after
    MAX_RETRIES failures in a row (the next pass reconciles again either way)."""
    bg = run.bg
    if bg is None:
        return False
    if outcome.ok:
        if not bg.retries:
            return False
        run.bg = replace(bg, retries=0, retry_at=0.0, error="")
        return True
    retries = bg.retries + 1
    if retries > MAX_RETRIES:
        run.halt(f"the blue-green switch failed {retries} times: {outcome.error}")
        return True
    retry_at = run.now + min(30.0, 2.0 ** (retries - 1))
    run.bg = replace(bg, retries=retries, retry_at=retry_at, error=outcome.error)
    run.events.append(RetryScheduled(
        run.state.id, run.now, index=action.index, node=action.node.name, step=action.kind,
        attempt=retries, retry_at=retry_at, error=outcome.error))
    return True


def rollback_refusal(state: RolloutState) -> str | None:
    """Why ``state`` cannot switch back to its warm blue pool, or None if it can."""
    bg = state.blue_green
    if bg is None or bg.side is not Side.GREEN or bg.switched_at is None:
        return f"rollout {state.id} has not switched to a green pool"
    if bg.rollback:
        return f"rollout {state.id} is already rolling back to blue"
    late = [r.old_name for r in state.replacements if r.phase is not Phase.WARM]
    if late:
        return (f"rollout {state.id}: the blue pool is no longer warm (scale_down_delay "
                f"{state.settings.scale_down_delay:g}s passed; {', '.join(late)} retired)")
    return None


# --- the side ---------------------------------------------------------------------


def _why_blue(run: Pass, bg: BlueGreen) -> str:
    """Why the traffic must be on blue now ('' when nothing says so)."""
    state = run.state
    if bg.rollback:
        return "`rollout rollback` asked to switch back to the warm blue pool"
    if state.aborting:
        return "the rollout is aborted"
    if state.stopping:
        return "a signal stopped the rollout"
    if run.failing:
        return f"the rollout is failing: {run.failing}"
    restoring = [r.old_name for r in run.reps if r.phase is Phase.RESTORING]
    if restoring:
        return f"{', '.join(restoring)} must be restored"
    if bg.side is Side.GREEN and bg.switched_at is None:
        down = _green_not_up(run)
        if down:
            reason = (f"the switch to green was under way but green {', '.join(down)} "
                      "is not UP")
            run.failing = run.failing or reason
            for i in range(len(run.reps)):
                run.restore(i, RestoreReason.ROLLOUT_FAILED)
            return reason
    return ""


def _why_kept(run: Pass, bg: BlueGreen) -> str:
    if bg.side is Side.GREEN and bg.switched_at is not None:
        return ("traffic was already switched to green: keeping it; blue retires after "
                "scale_down_delay")
    if bg.side is Side.GREEN:
        return "the switch to green was under way and every green node is UP: completing it"
    if any(_admin(run, r.new_target) is Admin.READY for r in run.reps):
        return "the switch back to blue was under way: completing it"
    return "traffic is on blue (the switch had not begun): continuing with the green pool"


def _admin(run: Pass, target: str) -> Admin | None:
    member = run.member(target)
    return member.admin if member is not None else None


def _choose(run: Pass, bg: BlueGreen, side: Side, reason: str) -> BlueGreen:
    _say(run, side, reason)
    run.progressed = True
    return replace(bg, side=side, retries=0, retry_at=0.0)


def _say(run: Pass, side: Side, reason: str) -> None:
    run.events.append(SideChosen(run.state.id, run.now, side=side.value, reason=reason))


def _all_staged_up(run: Pass) -> bool:
    reps = run.reps
    return bool(reps) and all(r.phase is Phase.STAGED for r in reps) and not _green_not_up(run)


def _green_not_up(run: Pass) -> list[str]:
    """Green nodes of live replacements that are missing or not UP in the LB."""
    down = []
    for rep in run.reps:
        if rep.phase.terminal:
            continue
        new = run.node(rep.new_name)
        member = run.member(new.lb_target) if new is not None else None
        if member is None or member.health is not Health.UP:
            down.append(rep.new_name)
    return down


def _on_side(run: Pass, side: Side) -> tuple[Node, ...]:
    """The nodes of ``side`` that are in service in the LB."""
    on = []
    for rep in run.reps:
        if rep.phase not in _PAIRED:
            continue
        green = side is Side.GREEN
        node = run.node(rep.new_name if green else rep.old_name)
        if node is None:
            continue
        member = run.member(node.lb_target if green else rep.old_target)
        if member is not None and member.admin is Admin.READY:
            on.append(node)
    return tuple(on)


def _to_switch(run: Pass, side: Side) -> tuple[tuple[Node, ...], tuple[Node, ...]]:
    """The nodes to put in service and to drain so that the LB matches ``side``."""
    ready: list[Node] = []
    drain: list[Node] = []
    for rep in run.reps:
        if rep.phase not in _PAIRED:
            continue
        old, new = run.node(rep.old_name), run.node(rep.new_name)
        old_m = run.member(rep.old_target)
        new_m = run.member(new.lb_target) if new is not None else None
        on, off = (new, old) if side is Side.GREEN else (old, new)
        on_m, off_m = (new_m, old_m) if side is Side.GREEN else (old_m, new_m)
        if on is not None and on_m is not None and on_m.admin is Admin.DRAIN:
            ready.append(on)
        if off is not None and off_m is not None and off_m.admin is Admin.READY:
            drain.append(off)
    return tuple(ready), tuple(drain)
