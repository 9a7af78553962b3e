"""How the batches of a rollout move on: a parked batch is released to
RETIRING (after the canary soak, for the first), the next batch starts once
the earlier ones hold no LB slot, and each finished batch is announced.
Pure, like the rest of the core."""

from __future__ import annotations

from rollout.core import canary, gate
from rollout.core import soak as soaking
from rollout.core.phases import Pass, advance
from rollout.core.state import Counters, Phase, Replacement, RestoreReason, Soak, Strategy, Wait
from rollout.events import BatchDone, SoakVerdict


def wait(i: int | None, kind: str, seconds: float, now: float) -> Wait:
    """An irreducible wait of ``seconds``, recorded at ``now``."""
    return Wait(i, kind, max(0.0, seconds), now)


def fail_rollout(run: Pass, reason: str, why: RestoreReason) -> None:
    """The rollout as a whole fails: restore every replacement that can be."""
    run.failing = run.failing or reason
    for i in range(len(run.reps)):
        run.restore(i, why)


def _needs_soak(run: Pass, batch: int) -> bool:
    s = run.settings
    judged = s.soak > 0 or s.analysis is not None
    return (batch == 0 and s.canary > 0 and judged and not run.state.soaked
            and not s.canary_steps)


def release_batches(run: Pass) -> None:
    """Move a batch to RETIRING once all its nodes are parked in STANDBY and,
    for the canary batch, the soak passed."""
    soak = run.soak
    for batch in sorted({r.batch for r in run.reps if r.phase is Phase.STANDBY}):
        reps = [r for r in run.reps if r.batch == batch]
        settled = (Phase.STANDBY, Phase.RETIRING, Phase.DONE, Phase.RESTORED, Phase.SKIPPED)
        if any(r.phase not in settled for r in reps):
            continue
        standby = [r for r in reps if r.phase is Phase.STANDBY]
        if any(r.index not in run.parked for r in standby):
            continue
        if batch == 0 and run.settings.canary_steps and not run.soaked:
            # The canary batch goes through its steps instead of one soak.
            if not canary.run_steps(run, standby):
                continue
            run.soaked = True
        elif _needs_soak(run, batch):
            if soak is None or soak.batch != batch:
                baseline = {t: Counters.of(m) for t, m in run.world.members.items()}
                run.soak = Soak(batch, run.now, baseline)
                run.progressed = True
                for r in standby:
                    run.wait_for(r.index, f"soaking canary for {run.settings.soak:g}s",
                                 run.now + run.settings.soak)
                continue
            news = [r.new_target for r in standby]
            ours = {r.new_target for r in run.reps if r.new_target}
            verdict = soaking.verdict(soak, run.world.members, news, ours, run.settings)
            elapsed = run.now - soak.started
            analysis = run.settings.analysis
            if analysis is not None and (verdict.passed or not verdict.at_once):
                # The analysis decides (rollout.core.gate), once the soak time is up.
                if elapsed >= run.settings.soak and not run.gate.paused:
                    # (paused: an inconclusive verdict waits for `rollout continue`)
                    gate.request(run, analysis, standby, ours)
                continue
            if verdict.passed and elapsed < run.settings.soak:
                continue
            if not verdict.passed and not verdict.at_once and elapsed < run.settings.soak:
                continue
            run.events.append(SoakVerdict(
                run.state.id, run.now, batch=batch, passed=verdict.passed,
                rate_new=verdict.rate_new, rate_old=verdict.rate_old, flaps=verdict.flaps,
                seconds=elapsed, reason=verdict.reason,
            ))
            run.soak = None
            run.progressed = True
            if not verdict.passed:
                for r in reps:
                    run.restore(r.index, RestoreReason.CANARY)
                fail_rollout(run, f"canary regression: {verdict.reason}",
                              RestoreReason.ROLLOUT_FAILED)
                continue
            run.soaked = True
            run.waits.append(wait(None, "soak", elapsed, run.now))
        for r in standby:
            run.move(r.index, Phase.RETIRING)
            advance(run, r.index)


def _released(run: Pass, rep: Replacement) -> bool:
    """Whether a later batch may start: this one no longer holds an LB slot."""
    if rep.phase.terminal:
        return True
    return rep.phase is Phase.RETIRING and rep.old_target not in run.world.members


def start_pending(run: Pass) -> None:
    """Start the next batch once every earlier one released its LB slots."""
    state = run.state
    if run.failing or run.halted or state.stopping or state.aborting:
        return
    pending = [r for r in run.reps if r.phase is Phase.PENDING]
    if not pending:
        return
    batch = min(r.batch for r in pending)
    if not all(_released(run, r) for r in run.reps if r.batch < batch):
        return
    if canary.held(run, f"before batch {batch}"):
        return
    for rep in pending:
        if rep.batch != batch:
            continue
        if state.strategy in (Strategy.SURGE, Strategy.BLUE_GREEN):
            run.move(rep.index, Phase.LAUNCHING)
        elif run.capacity_for(rep.index):
            run.move(rep.index, Phase.DRAINING)
        else:
            continue
        advance(run, rep.index)


def batch_events(run: Pass) -> None:
    """One BatchDone event per batch whose replacements all ended."""
    done = set(run.state.batches_done)
    open_batches: dict[int, list[Replacement]] = {}
    for r in run.reps:
        if r.batch not in done:
            open_batches.setdefault(r.batch, []).append(r)
    for batch, reps in sorted(open_batches.items()):
        if all(r.phase.terminal for r in reps) and not any(
            r.phase is Phase.SKIPPED for r in reps
        ):
            done.add(batch)
            run.events.append(BatchDone(
                run.state.id, run.now, batch=batch,
                replaced=sum(1 for r in reps if r.phase is Phase.DONE),
                restored=sum(1 for r in reps if r.phase is Phase.RESTORED),
            ))
    run.batches_done = frozenset(done)
