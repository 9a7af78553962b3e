"""`rollout pool add`: scaffold a new pool."""

from __future__ import annotations

import click

from rollout.app import pools
from rollout.cli.base import Options, cli, common, pass_options


@cli.group()
def pool() -> None:
    """Pools: one role in one environment."""


@pool.command("add")
@click.argument("role")
@click.option("--port", type=int, default=None,
              help="The pool's HAProxy frontend port. [the next free one]")
@common
@pass_options
def pool_add(opts: Options, role: str, port: int | None) -> None:
    """Scaffold the pool ROLE: roles/ROLE (if absent), smoke/ROLE, the inventory
    group and its group_vars. Never overwrites a file."""
    made = pools.add_pool(opts.workspace(), role, port)
    out = opts.out()
    if out.json:
        out.record({"event": "pool_added", "role": made.role, "env": made.env,
                    "frontend_port": made.port, "created": [str(p) for p in made.created]})
        return
    for path in made.created:
        out.line(f"created {path}")
    kept = "the existing role" if made.role_existed else "a starter role (replace its tasks)"
    out.line(f"pool {made.role} added to {made.env} with {kept}, frontend port {made.port}; "
             f"next: rollout build --role {made.role} && rollout run --role {made.role}")
