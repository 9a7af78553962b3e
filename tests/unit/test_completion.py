"""Shell completion: click's own, through the installed entry point's code path
(``python -m rollout`` runs the same ``main`` as the ``rollout`` script)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _rollout(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollout"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "complete -o nosort -F _rollout_completion rollout"),
    ("zsh", "#compdef rollout"),
])
def test_the_completion_script_is_produced(shell: str, marker: str) -> None:
    proc = _rollout({"_ROLLOUT_COMPLETE": f"{shell}_source"})
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout
    assert "_rollout_completion" in proc.stdout


def test_bash_completes_subcommands_and_options() -> None:
    proc = _rollout({"_ROLLOUT_COMPLETE": "bash_complete", "COMP_WORDS": "rollout re",
                     "COMP_CWORD": "1"})
    assert proc.returncode == 0, proc.stderr
    assert {"plain,resume", "plain,replace", "plain,reap"} <= set(proc.stdout.splitlines())
    proc = _rollout({"_ROLLOUT_COMPLETE": "bash_complete", "COMP_WORDS": "rollout run --ro",
                     "COMP_CWORD": "2"})
    assert "plain,--role" in proc.stdout.splitlines()
