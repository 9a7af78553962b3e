"""`rollout run`, `resume`, `abort`, `rollback`, `reap`, `status`, `history`, `show`."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rollout import names
from rollout.app.history import pool_status, rollout_detail, rollout_history
from rollout.app.plan import plan_rollout
from rollout.app.rollback import rollback_of, rollback_pool
from rollout.app.rollouts import (
    RolloutResult,
    abort_rollout,
    pool_lease,
    reap_pool,
    resume_rollout,
    run_rollout,
    unlock_pool,
)
from rollout.app.session import OVERRIDABLE
from rollout.cli.base import STOP, Options, cli, common, pass_options
from rollout.cli.live import live_wanted, progress
from rollout.cli.output import Output
from rollout.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def pacing_options(func: F) -> F:
    """Command-line overrides of the pool's pacing settings (shared by run, plan,
    phoenix and replace). Unset means: as in the inventory."""
    options = [
        click.option("--strategy", type=click.Choice(["surge", "in_place", "blue_green"]),
                     default=None),
        click.option("--batch-size", type=int, default=None),
        click.option("--max-unavailable", type=int, default=None),
        click.option("--min-healthy", default=None, help="A count (3) or a share ('75%').",),
        click.option("--canary", type=int, default=None, help="Nodes in the first batch."),
        click.option("--soak", default=None, help="Canary soak, e.g. 30s."),
        click.option("--canary-weight", type=click.FloatRange(0, 100, min_open=True,
                                                              max_open=True), default=None,
                     help="The canary's share of traffic in percent during the soak "
                     "(canary_steps: weight PCT, pause SOAK)."),
        click.option("--failure-budget", type=int, default=None),
        click.option("--analysis", default=None,
                     help="Judge the canary soak by this analysis of rollout.analyses."),
        click.option("--standby", type=click.Choice(["running", "stopped"]), default=None),
        click.option("--ready-timeout", "ready", default=None),
        click.option("--smoke-timeout", "smoke", default=None),
        click.option("--lb-up-timeout", "lb_up", default=None),
        click.option("--drain-timeout", "drain", default=None),
        click.option("--progress-deadline", default=None),
        click.option("--scale-down-delay", default=None,
                     help="blue_green: how long the old pool stays warm for `rollout "
                     "rollback`, e.g. 10m."),
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        overrides = {key: kwargs.pop(key) for key in OVERRIDABLE}
        return func(*args, overrides={k: v for k, v in overrides.items() if v is not None},
                    **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def target_options(func: F) -> F:
    func = click.option("--image", "image_id", default=None, help="Target image id.")(func)
    func = click.option("--version", "version", default=None,
                        help="Target image version. [the role's newest image]")(func)
    return func


def report_end(mode: str, result: dict[str, Any]) -> None:
    """Print what ``rollout rollback`` prints after the rollout's events, for
    the fast client (:mod:`rollout.entry`), which got ``result`` from the live
    controller (:meth:`RolloutResult.to_dict`)."""
    _report(Output(mode), RolloutResult.from_dict(result))


def _report(out: Output, result: RolloutResult) -> None:
    if out.json:
        return  # the rollout_finished event already said it
    if result.restored:
        out.line(f"warning: {len(result.restored)} node(s) failed and were restored: "
                 f"{', '.join(result.restored)}", style="yellow")
    if result.overhead is not None:
        out.line(f"wall {result.wall:.1f}s, irreducible waits {sum(result.waits.values()):.1f}s,"
                 f" overhead ratio {result.overhead:.3f}")


@cli.command()
@click.option("--role", required=True)
@target_options
@pacing_options
@click.option("--wait-lock", is_flag=True, help="Wait for the pool's lock instead of exit 3.")
@click.option("--junit", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the smoke tests' JUnit XML here.")
@click.option("--metrics-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Update this Prometheus textfile with the rollout's metrics.")
@click.option("--allow-below-floor", is_flag=True,
              help="Run a plan that leaves fewer nodes in service than the floor.")
@common
@pass_options
def run(opts: Options, role: str, version: str | None, image_id: str | None,
        overrides: dict[str, Any], wait_lock: bool, junit: Path | None,
        metrics_file: Path | None, allow_below_floor: bool) -> None:
    """Replace the pool's nodes with fresh ones from the target image.

    A plan that would breach the pool's floor (see `rollout plan`) is refused
    with exit 2 unless --allow-below-floor."""
    names.name(role, "role", "--role")
    out = opts.out()
    ws = opts.workspace()
    eta = floor = base = None
    if live_wanted(out, opts.progress):  # the view shows the plan's ETA and floor
        plan = plan_rollout(ws, role, version=version, image_id=image_id, overrides=overrides)
        eta, floor, base = plan.eta.seconds, plan.floor, plan.in_service
    STOP.install()
    with progress(out, enabled=opts.progress, eta=eta, floor=floor, base=base) as sink:
        result = run_rollout(
            ws, role, version=version, image_id=image_id, overrides=overrides,
            wait_lock=wait_lock, junit=junit, metrics_file=metrics_file, on_event=sink,
            stop_requested=STOP.requested, allow_below_floor=allow_below_floor)
    _report(out, result)


def _id_or_role(func: F) -> F:
    func = click.argument("rollout_id", required=False)(func)
    func = click.option("--role", default=None)(func)
    func = click.option("--wait-lock", is_flag=True)(func)
    return func


@cli.command()
@_id_or_role
@common
@pass_options
def resume(opts: Options, rollout_id: str | None, role: str | None, wait_lock: bool) -> None:
    """Reconcile an unfinished rollout with the world, then finish or roll back."""
    out = opts.out()
    STOP.install()
    with progress(out, enabled=opts.progress) as sink:
        result = resume_rollout(opts.workspace(), role=role, rollout_id=rollout_id,
                                wait_lock=wait_lock, on_event=sink,
                                stop_requested=STOP.requested)
    _report(out, result)


@cli.command()
@_id_or_role
@common
@pass_options
def abort(opts: Options, rollout_id: str | None, role: str | None, wait_lock: bool) -> None:
    """Stop an unfinished rollout and put its old nodes back in service."""
    out = opts.out()
    STOP.install()
    result = abort_rollout(opts.workspace(), role=role, rollout_id=rollout_id,
                           wait_lock=wait_lock, on_event=out.event,
                           stop_requested=STOP.requested)
    _report(out, result)


@cli.command()
@click.option("--role", required=True)
@click.option("--wait-lock", is_flag=True)
@common
@pass_options
def rollback(opts: Options, role: str, wait_lock: bool) -> None:
    """Within a blue-green scale_down_delay, switch back to the warm old pool at
    once; otherwise roll out the image the last succeeded rollout replaced
    (`rollout history --role R` shows which). Exit 2: nothing to go back to."""
    out = opts.out()
    STOP.install()
    result = rollback_pool(opts.workspace(), role, wait_lock=wait_lock, on_event=out.event,
                           stop_requested=STOP.requested)
    _report(out, result)


@cli.command()
@click.option("--role", required=True)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--wait-lock", is_flag=True)
@common
@pass_options
def reap(opts: Options, role: str, dry_run: bool, wait_lock: bool) -> None:
    """Remove nodes and LB entries that rollouts created but no journal owns."""
    out = opts.out()
    report = reap_pool(opts.workspace(), role, dry_run=dry_run, wait_lock=wait_lock,
                       on_event=out.event)
    if out.json:
        out.record({"event": "reap_report", "destroyed": list(report.destroyed),
                    "removed": list(report.removed), "kept": [list(k) for k in report.kept],
                    "dry_run": report.dry_run, "reweighted": list(report.reweighted)})
    elif not report.destroyed and not report.removed and not report.reweighted:
        out.line("nothing to reap")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


@cli.command()
@click.option("--role", default=None)
@common
@pass_options
def status(opts: Options, role: str | None) -> None:
    """Each pool's unfinished rollout (if any), lock holder and last rollout."""
    rows = pool_status(opts.workspace(), role)
    out = opts.out()
    if out.json:
        out.document({"pools": rows})
        return
    for r in rows:
        un = r["unfinished"]
        last = r["last"]
        paused = un["paused"] if un else None
        out.line(f"{r['env']}/{r['role']}: "
                 + (f"UNFINISHED {un['id']} ({un['status']}): run 'rollout resume {un['id']}' "
                    f"or 'rollout abort {un['id']}'" if un else "no unfinished rollout")
                 + (f"; PAUSED for {paused['waited']:.0f}s ({paused['reason']}): run "
                    f"'rollout continue {un['id']}'" if paused and paused["since"] else "")
                 + ("; pause requested: holds at the next step boundary"
                    if paused and not paused["since"] else "")
                 + (f"; {_lock_text(r['lock'])}" if r["lock"] else "")
                 + (f"; last {last['id']} {last['status']} at {_when(last['finished_at'])}"
                    if last else ""))


def _lock_text(lock: dict[str, Any]) -> str:
    left = lock["expires_in"]
    expiry = (f"expired {-left:.0f}s ago" if lock["expired"] else f"expires in {left:.0f}s")
    return (f"locked by {lock['holder']} (host {lock['host']}, pid {lock['pid']}, "
            f"epoch {lock['epoch']}, {expiry} at {_when(lock['expires_at'])})")


@cli.command()
@click.option("--role", required=True)
@click.option("--force", is_flag=True,
              help="Required: release the lease whoever holds it.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@common
@pass_options
def unlock(opts: Options, role: str, force: bool, yes: bool) -> None:
    """Release a pool's lease whose holder you know is dead.

    The lease's epoch goes up, so the old holder, if it was only frozen, is
    refused at its next journal write and stops (exit 3). The release is
    journaled with who did it. Asks for confirmation unless --yes."""
    names.name(role, "role", "--role")
    out = opts.out()
    ws = opts.workspace()
    if not force:
        raise ConfigError(f"`rollout unlock --role {role}` releases the lease whoever holds "
                          "it; pass --force to say you know its holder is dead",
                          hint=f"see who holds it with `rollout status --role {role}`")
    lock = pool_lease(ws, role)
    if lock is None:
        out.line(f"{ws.env.name}/{role}: not locked, nothing to release")
        return
    if not yes:
        question = f"{ws.env.name}/{role}: {_lock_text(lock)}."
        if lock["alive_here"]:
            question += f" That process is ALIVE on this host (pid {lock['pid']})."
        if not sys.stdin.isatty():
            raise ConfigError(f"{question} Refusing to release it without confirmation",
                              hint="run it in a terminal, or pass --yes")
        if not click.confirm(f"{question} Release it?", default=False, err=True):
            raise ConfigError(f"{ws.env.name}/{role}: left locked, as you answered")
    event = unlock_pool(ws, role, on_event=out.event)
    if event is None:
        out.line(f"{ws.env.name}/{role}: the lease was released meanwhile, nothing to do")


@cli.command()
@click.option("--role", default=None)
@click.option("--limit", type=click.IntRange(1, 1000), default=20)
@common
@pass_options
def history(opts: Options, role: str | None, limit: int) -> None:
    """Past rollouts, newest first."""
    ws = opts.workspace()
    records = rollout_history(ws, role, limit=limit)
    out = opts.out()
    if out.json:
        out.document(records)
        return
    out.table("rollouts", ["id", "pool", "status", "target", "started", "finished"],
              [[r["id"], f"{r['env']}/{r['role']}", r["status"], r["target_version"],
                _when(r["started_at"]), _when(r["finished_at"])] for r in records])
    if role is not None:
        back = rollback_of(ws, role)
        out.line(f"`rollout rollback --role {role}` would "
                 + (back.text() if back is not None else "refuse: nothing to go back to"))


@cli.command()
@click.argument("rollout_id")
@common
@pass_options
def show(opts: Options, rollout_id: str) -> None:
    """One rollout: its replacements, every recorded step and its timings."""
    names.rollout_id(rollout_id, "ROLLOUT_ID")
    data = rollout_detail(opts.workspace(), rollout_id)
    out = opts.out()
    if out.json:
        out.document(data)
        return
    waits, overhead = data["waits"], data["overhead"]
    out.line(f"rollout {data['id']}: {data['env']}/{data['role']} -> {data['target_version']} "
             f"({data['target_image']}), {data['status']}"
             + (f": {data['message']}" if data["message"] else ""))
    out.table("replacements", ["#", "batch", "old", "new", "phase", "error"],
              [[str(r["index"]), str(r["batch"]), r["old"], r["new"], r["phase"],
                r["error"] or ""] for r in data["replacements"]])
    out.table("steps", ["step", "node", "ok", "seconds", "error"],
              [[s["kind"], s["node"], "-" if s["ok"] is None else str(s["ok"]),
                f"{s['duration']:.2f}" if s["duration"] is not None else "-", s["error"] or ""]
               for s in data["steps"]])
    if data["analysis"]:
        out.table("analysis", ["analysis", "outcome", "result", "baseline", "detail"],
                  [[m["analysis"], m["outcome"],
                    "-" if m["result"] is None else f"{m['result']:.4g}",
                    "-" if m["baseline"] is None else f"{m['baseline']:.4g}", m["detail"]]
                   for m in data["analysis"]])
    if waits:
        out.line("waits: " + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(waits.items()))
                 + (f"; overhead ratio {overhead:.3f}" if overhead else ""))
