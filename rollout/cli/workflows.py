"""`rollout plan`, `phoenix`, `replace` and `promote`: thin wrappers over
:mod:`rollout.app`."""

from __future__ import annotations

from typing import Any

import click

from rollout import names
from rollout.app.phoenix import (
    PhoenixBudget,
    PhoenixStatus,
    parse_max_age,
    parse_window,
    phoenix_run,
)
from rollout.app.plan import plan_rollout, render_text
from rollout.app.promote import promote_image
from rollout.app.replace import replace_node
from rollout.cli.base import STOP, Options, cli, common, pass_options
from rollout.cli.live import progress
from rollout.cli.rollouts import pacing_options, target_options


@cli.command()
@click.option("--role", required=True)
@target_options
@pacing_options
@common
@pass_options
def plan(opts: Options, role: str, version: str | None, image_id: str | None,
         overrides: dict[str, Any]) -> None:
    """Preview a rollout; changes nothing.

    Shows the nodes to replace and those already on the target, the batches
    in order, the in-service capacity at each step against the pool's floor,
    and an ETA from the journal's recorded waits (defaults without history).
    Warns when the plan breaches the floor: `rollout run` refuses such a plan
    without --allow-below-floor. Exit 0 (also with warnings), 2 bad input.
    """
    names.name(role, "role", "--role")
    report = plan_rollout(opts.workspace(), role, version=version, image_id=image_id,
                          overrides=overrides)
    out = opts.out()
    if out.json:
        out.record(report.to_json())
        return
    for line in render_text(report):
        out.line(line, style="yellow" if line.startswith("warning") else None)


@cli.command()
@click.option("--role", required=True)
@click.option("--max-age", required=True,
              help="Replace nodes older than this, e.g. 7d; 0s replaces every node.")
@click.option("--window", default=None,
              help="Maintenance window, e.g. 'Mon-Fri 02:00-04:00 UTC' or 'daily 01:00-03:00'.")
@click.option("--max-per-run", type=int, default=None, help="At most N nodes this run.")
@click.option("--max-per-day", type=int, default=None,
              help="At most N nodes in any rolling 24 hours.")
@common
@pass_options
def phoenix(opts: Options, role: str, max_age: str, window: str | None,
            max_per_run: int | None, max_per_day: int | None) -> None:
    """Replace nodes older than --max-age with fresh ones of the pool's image.

    Safe from cron, a systemd timer or a Jenkins cron trigger: it shares the
    pool's lock and is idempotent.

    \b
    Exit codes:
      0  nodes replaced, nothing due, or "skipped: ..." (another controller
         holds the lock, an unfinished rollout, an unhealthy pool, outside
         the window, the per-day budget spent): try again later
      1  a replacement failed and its old node was restored
      2  bad option (window, age, budget)
      4  halted: resume or abort; 130 interrupted
    """
    names.name(role, "role", "--role")
    age = parse_max_age(max_age)
    parsed = parse_window(window) if window else None
    budget = PhoenixBudget(max_per_run, max_per_day)
    out = opts.out()
    STOP.install()
    with progress(out, enabled=opts.progress) as sink:
        report = phoenix_run(opts.workspace(), role, max_age=age, window=parsed,
                             budget=budget, on_event=sink, stop_requested=STOP.requested)
    if out.json:
        out.record(report.to_json())
    elif report.status is PhoenixStatus.SKIPPED:
        out.line(f"skipped: {report.reason}", style="yellow")
    elif report.status is PhoenixStatus.NOTHING_DUE:
        out.line(f"nothing to do: {report.reason}")
    else:
        replaced = ", ".join(report.result.replaced) if report.result else ""
        out.line(f"phoenix: {report.reason}; replaced {replaced}")


@cli.command()
@click.argument("node")
@click.option("--role", default=None, help="The node's pool. [searched]")
@click.option("--force", is_flag=True, help="Replace the node even if it passes.")
@click.option("--wait-lock", is_flag=True, help="Wait for the pool's lock instead of exit 3.")
@common
@pass_options
def replace(opts: Options, node: str, role: str | None, force: bool, wait_lock: bool) -> None:
    """Fix it or kick it: smoke-test NODE, keep forensics, replace it if sick.

    Forensics (failed units, journal, disk, memory) go to the data directory's
    evidence/forensics/. A node that passes is left alone without --force.

    \b
    Exit codes: 0 passed (nothing replaced) or replaced; 1 the replacement
    failed and NODE was restored (if the new node failed its smoke tests too,
    the message says the image is the likely cause); 2 unknown node; 3 locked.
    """
    out = opts.out()
    STOP.install()
    with progress(out, enabled=opts.progress) as sink:
        report = replace_node(opts.workspace(), node, role=role, force=force,
                              wait_lock=wait_lock, on_event=sink,
                              stop_requested=STOP.requested)
    if out.json:
        out.record(report.to_json())
        return
    out.line(f"forensics of {report.node}: {report.forensics.directory}")
    if report.result is None:
        out.line(report.verdict.reason, style="green")
    else:
        out.line(f"{report.verdict.reason}: replaced in rollout {report.result.id}")


@cli.command()
@click.argument("image_id", metavar="IMAGE")
@click.option("--to", "env_to", required=True, help="The environment to promote to.")
@click.option("--by", default=None, help="Who promotes. [$SUDO_USER or the login name]")
@common
@pass_options
def promote(opts: Options, image_id: str, env_to: str, by: str | None) -> None:
    """Record that IMAGE is promoted to an environment (see `rollout images`)."""
    image = promote_image(opts.workspace(), image_id, env_to, by=by)
    out = opts.out()
    promoted = sorted(image.manifest.get("promoted_to", []))
    if out.json:
        out.record({"event": "image_promoted", "id": image.id, "to": env_to,
                    "promoted_to": promoted})
    else:
        out.line(f"promoted {image.id} to {env_to} (promoted to: {', '.join(promoted)})")
