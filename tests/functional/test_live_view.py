"""`rollout run` under a pseudo-terminal (``script``) draws the live view and
ends cleanly: exit 0, the final frame shows every node done and the pool at
full strength against its floor, and the pool is healthy afterwards."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest

from rollout.testing.lab import LabHandle
from tests.functional.rollout_cli import POOL_SIZE, ROLE, assert_pool_healthy, command, next_target

pytestmark = pytest.mark.functional

#: Escape sequences of a terminal (colours, cursor moves) and carriage returns.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def test_run_on_a_tty_draws_the_live_view_and_ends_cleanly(healthy: LabHandle) -> None:
    lab = healthy
    target = next_target(lab)
    cmd = shlex.join(command(lab, "run", "--role", ROLE, "--version", target))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "60"}
    # -e: script exits with the command's code; -f: flush as it goes.
    proc = subprocess.run(["script", "-qefc", cmd, "/dev/null"], capture_output=True,
                          env=env, timeout=900, check=False)
    screen = ANSI.sub("", proc.stdout.decode(errors="replace"))
    assert proc.returncode == 0, screen[-3000:] + proc.stderr.decode(errors="replace")
    # It drew the view (the table header and a progress bar), not plain lines.
    assert "in phase" in screen and "━" in screen
    final = screen[screen.rindex("rolling lab/web"):]
    assert f"{POOL_SIZE}/{POOL_SIZE} nodes" in final
    assert re.search(rf"in service {POOL_SIZE} / floor \d", final), final
    assert re.search(r"rollout r\w+ succeeded", final), final
    assert_pool_healthy(lab, target)
