"""`rollout watch`: follow a rollout another process runs, from the state store."""

from __future__ import annotations

import click

from rollout import names
from rollout.app.watch import watch_rollout
from rollout.cli.base import Options, cli, common, pass_options
from rollout.cli.live import progress
from rollout.durations import parse_duration
from rollout.errors import ConfigError


@cli.command()
@click.argument("rollout_id", required=False)
@click.option("--role", default=None, help="Watch the pool's unfinished rollout.")
@click.option("--poll", default="1s", show_default=True, help="How often to read the store.")
@common
@pass_options
def watch(opts: Options, rollout_id: str | None, role: str | None, poll: str) -> None:
    """Follow a running rollout, read-only, until it ends; exit with its code.

    Prints the rollout's events as its own terminal does (JSON with --output
    json). Needs no lock and changes nothing: with a shared PostgreSQL store
    it works from any machine. Ctrl-C stops watching, not the rollout.

    \b
    Exit codes: the rollout's (0 succeeded or aborted, 1 failed and restored,
    4 halted or its controller is gone, 130 interrupted); 2 no such rollout.
    """
    if role is not None:
        names.name(role, "role", "--role")
    try:
        interval = parse_duration(poll)
    except ValueError as exc:
        raise ConfigError(f"--poll: {exc}") from None
    out = opts.out()
    with progress(out, enabled=opts.progress) as sink:
        watch_rollout(opts.workspace(), rollout_id=rollout_id, role=role, on_event=sink,
                      poll=max(interval, 0.1))
