"""``rollout ui``: serve the read-only dashboard of a workspace's environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rollout.app.ui.server import check_listen, parse_listen, read_token, serve
from rollout.app.ui.sources import WorkspaceSources
from rollout.app.workspace import Workspace
from rollout.clock import SystemClock


def run_dashboard(ws: Workspace, listen: str, *, token_file: Path | None,
                  on_ready: Callable[[str], None]) -> None:
    """Validate the address and token, then serve until Ctrl-C."""
    host, port = parse_listen(listen)
    token = read_token(token_file, dict(os.environ))
    check_listen(host, token)
    serve(WorkspaceSources(ws, SystemClock()), host, port, token=token, on_ready=on_ready)
