"""`rollout lab ...`: the embedded lab."""

from __future__ import annotations

from typing import Any

import click

from rollout.cli.base import STOP, Options, cli, common, pass_options
from rollout.cli.output import Output


@cli.group()
def lab() -> None:
    """The embedded lab: nspawn nodes behind a local HAProxy."""


@lab.command("up")
@click.option("--nodes", type=click.IntRange(1, 64), default=None,
              help="Nodes per pool (default: the pool's pool_size).")
@common
@pass_options
def lab_up(opts: Options, nodes: int | None) -> None:
    """Build or converge the lab: base image, network, HAProxy, the pools."""
    from rollout.backends.lab.env import lab_up as up
    from rollout.backends.lab.system import require_root

    require_root("rollout lab up")
    ws = opts.workspace()
    out = opts.out()
    # SIGINT and SIGTERM stop it between steps; the nodes (and a bake's builder)
    # it started are removed before it exits.
    STOP.install()
    status = up(ws.project, ws.env, ws.data, nodes=nodes, on_event=out.line,
                cancel=STOP.requested, vault=ws.vault)
    _print_lab_status(out, status)


@lab.command("prepare")
@common
@pass_options
def lab_prepare(opts: Options) -> None:
    """Build the base image cache once (debootstrap); later runs reuse it."""
    from rollout.backends.lab.base import ensure_base
    from rollout.backends.lab.system import require_programs, require_root

    require_root("rollout lab prepare")
    require_programs(["debootstrap"])
    ws = opts.workspace()
    path = ensure_base(ws.data)
    opts.out().line(f"base image ready: {path}")


@lab.command("down")
@common
@pass_options
def lab_down(opts: Options) -> None:
    """Remove everything the lab created (nodes, network, NAT rules, HAProxy)."""
    from rollout.backends.lab.env import lab_down as down
    from rollout.backends.lab.system import require_root

    require_root("rollout lab down")
    ws = opts.workspace()
    down(ws.env, ws.data, on_event=opts.out().line)


@lab.command("status")
@common
@pass_options
def lab_status(opts: Options) -> None:
    """Show the nodes, their images, their LB state and the frontend URL."""
    from rollout.backends.lab.env import lab_status as status

    ws = opts.workspace()
    _print_lab_status(opts.out(), status(ws.env, ws.data))


def _print_lab_status(out: Output, status: Any) -> None:
    data = status.to_json()
    if out.json:
        out.document(data)
        return
    pools = data.get("pools") or [{"role": "", "frontend": data["frontend"]}]
    for pool in pools:
        label = f"{pool['role']} " if len(pools) > 1 else ""
        out.line(f"{label}frontend: {pool['frontend']}")
    if not data["nodes"]:
        out.line("the lab has no nodes: bring it up with `sudo rollout lab up`")
        return
    rows = [[n["name"], n["address"], str(n["image"]), str(n.get("lb_state", "")),
             str(n.get("state", ""))] for n in data["nodes"]]
    out.table("lab nodes", ["name", "address", "image", "lb", "state"], rows)


