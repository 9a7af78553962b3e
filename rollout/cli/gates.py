"""``rollout pause`` and ``rollout continue``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from rollout.app.gates import continue_rollout, pause_rollout
from rollout.cli.base import Options, cli, common, pass_options


def _ask(opts: Options, ask: Callable[..., dict[str, Any]], rollout_id: str | None,
         role: str | None) -> None:
    out = opts.out()
    answer = ask(opts.workspace(), role=role, rollout_id=rollout_id)
    if out.json:
        out.record({"event": "operator_request", **answer})
        return
    verb = "pause at its next step boundary" if ask is pause_rollout else "continue"
    out.line(f"asked rollout {answer['rollout_id']} to {verb}")
    if answer["note"]:
        out.line(answer["note"], style="yellow")


@cli.command("pause")
@click.argument("rollout_id", required=False)
@click.option("--role", default=None)
@common
@pass_options
def pause(opts: Options, rollout_id: str | None, role: str | None) -> None:
    """Hold a running rollout at its next step boundary (until `rollout continue`)."""
    _ask(opts, pause_rollout, rollout_id, role)


@cli.command("continue")
@click.argument("rollout_id", required=False)
@click.option("--role", default=None)
@common
@pass_options
def continue_(opts: Options, rollout_id: str | None, role: str | None) -> None:
    """Move a paused rollout on (past a `pause: {}` canary step, or a `rollout pause`)."""
    _ask(opts, continue_rollout, rollout_id, role)
