"""`rollout ui`: the read-only web dashboard."""

from __future__ import annotations

from pathlib import Path

import click

from rollout.app.dashboard import run_dashboard
from rollout.cli.base import Options, cli, common, pass_options


@cli.command()
@click.option("--listen", default="127.0.0.1:8765", show_default=True, metavar="HOST:PORT",
              help="Where to serve. Beyond loopback a token is required.")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A file holding the access token (or set ROLLOUT_UI_TOKEN).")
@common
@pass_options
def ui(opts: Options, listen: str, token_file: Path | None) -> None:
    """Serve a read-only dashboard: pools, live rollouts, history, images."""
    out = opts.out()
    run_dashboard(opts.workspace(), listen, token_file=token_file,
                  on_ready=lambda url: out.line(f"rollout ui: serving {url} (Ctrl-C stops)"))
