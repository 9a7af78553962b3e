"""`rollout lab ...`: the embedded lab."""

from __future__ import annotations

import click

from rollout.app import lab as lab_app
from rollout.app.lab import LabStatus
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
    out = opts.out()
    # SIGINT and SIGTERM stop it between steps; the nodes (and a bake's builder)
    # it started are removed before it exits.
    STOP.install()
    _print_lab_status(out, lab_app.lab_up(opts.workspace(), nodes=nodes, on_event=out.line,
                                          cancel=STOP.requested))


@lab.command("prepare")
@common
@pass_options
def lab_prepare(opts: Options) -> None:
    """Build the base image cache once (debootstrap); later runs reuse it."""
    path = lab_app.lab_prepare(opts.workspace())
    opts.out().line(f"base image ready: {path}")


@lab.command("down")
@common
@pass_options
def lab_down(opts: Options) -> None:
    """Remove everything the lab created (nodes, network, NAT rules, HAProxy)."""
    lab_app.lab_down(opts.workspace(), on_event=opts.out().line)


@lab.command("status")
@common
@pass_options
def lab_status(opts: Options) -> None:
    """Show the nodes, their images, their LB state and the frontend URL."""
    _print_lab_status(opts.out(), lab_app.lab_status(opts.workspace()))


def _print_lab_status(out: Output, status: LabStatus) -> None:
    data = status.to_json()
    if out.json:
        out.document(data)
        return
    pools = data.get("pools") or [{"role": "", "frontend": data["frontend"]}]
    for pool in pools:
        label = f"{pool['role']} " if len(pools) > 1 else ""
        out.line(f"{label}frontend: {pool['frontend']}")
    if data.get("prometheus"):
        out.line(f"prometheus: {data['prometheus']}")
    if not data["nodes"]:
        out.line("the lab has no nodes: bring it up with `sudo rollout lab up`")
        return
    rows = [[n["name"], n["address"], str(n["image"]), str(n.get("lb_state", "")),
             str(n.get("state", ""))] for n in data["nodes"]]
    out.table("lab nodes", ["name", "address", "image", "lb", "state"], rows)


