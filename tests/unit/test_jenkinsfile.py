"""The Jenkinsfile and the CLI contract it relies on.

The Jenkinsfile is read as text: its stages and their order, the rollout calls
in its ``sh`` steps, and the flags those calls pass, which must all exist in
``rollout.cli.cli``. A CLI change that breaks the pipeline fails here first.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from rollout.cli import cli

JENKINSFILE = Path(__file__).resolve().parents[2] / "Jenkinsfile"
TEXT = JENKINSFILE.read_text()
ROLLOUT = ".venv/bin/rollout"
DEPLOYS = {"Deploy dev": "dev", "Deploy staging": "staging", "Deploy prod": "prod"}


def _block(text: str, start: int) -> str:
    """The text of the brace-delimited block opening at or after ``start``."""
    open_at = text.index("{", start)
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1:i]
    raise AssertionError("unbalanced braces in the Jenkinsfile")


def stages() -> dict[str, str]:
    """Stage name -> body, in file order."""
    return {m.group(1): _block(TEXT, m.end()) for m in re.finditer(r"stage\('([^']+)'\)", TEXT)}


def shell_lines(body: str) -> list[str]:
    """The lines of the ``sh '''...'''`` steps of a stage body."""
    lines = []
    for script in re.findall(r"sh\s*'''(.*?)'''", body, flags=re.S):
        lines += [line.strip() for line in script.replace("\\\n", " ").splitlines()
                  if line.strip()]
    return lines


def rollout_calls(body: str) -> list[list[str]]:
    return [shlex.split(line) for line in shell_lines(body) if line.startswith(ROLLOUT)]


def split_call(argv: list[str]) -> tuple[list[str], str, list[str], str | None]:
    """(global options, subcommand, subcommand arguments, stdout redirect target)."""
    assert argv[0] == ROLLOUT
    redirect = None
    if ">" in argv:
        at = argv.index(">")
        redirect, argv = argv[at + 1], argv[:at]
    i = 1
    while argv[i].startswith("--"):
        i += 2  # every global option takes a value
    return argv[1:i], argv[i], argv[i + 1:], redirect


def flags(args: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    i = 0
    while i < len(args):
        assert args[i].startswith("--"), f"unexpected positional argument {args[i]!r}"
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            found[args[i]] = args[i + 1]
            i += 2
        else:
            found[args[i]] = None
            i += 1
    return found


def option_names(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in param.opts}


def all_calls() -> list[tuple[str, list[str]]]:
    return [(name, call) for name, body in stages().items() for call in rollout_calls(body)]


# -- the pipeline's shape ---------------------------------------------------------

def test_stages_in_order() -> None:
    assert list(stages()) == ["Build", "Deploy dev", "Deploy staging", "Approve prod",
                              "Deploy prod"]


def test_parameters() -> None:
    assert re.search(r"string\(name: 'ROLE', defaultValue: 'web'", TEXT)
    assert re.search(r"string\(name: 'VERSION'", TEXT)


def test_the_build_stage_bakes_once_and_exports_the_image_id() -> None:
    build = stages()["Build"]
    calls = rollout_calls(build)
    assert len(calls) == 1
    _, sub, args, redirect = split_call(calls[0])
    assert sub == "build"
    assert flags(args) == {"--role": "$ROLE", "--version": "$VERSION", "--output": "json"}
    assert redirect == "build.jsonl"
    assert "env.IMAGE_ID = sh(returnStdout: true" in build
    # nowhere else does the pipeline bake
    assert [s for s, c in all_calls() if split_call(c)[1] == "build"] == ["Build"]


def _extractor() -> str:
    match = re.search(r"\.venv/bin/python -c '(.*?)'\n", stages()["Build"])
    assert match, "the Build stage extracts the image id with .venv/bin/python -c"
    return match.group(1)


@pytest.mark.parametrize(
    ("events", "expected", "code"),
    [
        ([{"event": "message", "text": "baking"},
          {"event": "image_registered", "id": "web-1.0-0badcafe", "role": "web"}],
         "web-1.0-0badcafe", 0),
        ([{"event": "message", "text": "baking"}], "", 1),
    ],
)
def test_the_image_id_extraction(tmp_path: Path, events: list[dict[str, str]], expected: str,
                                 code: int) -> None:
    (tmp_path / "build.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events) + "\n")
    done = subprocess.run([sys.executable, "-c", _extractor()], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == code, done.stderr
    assert done.stdout.strip() == expected


@pytest.mark.parametrize(("stage", "env"), list(DEPLOYS.items()))
def test_each_deploy_rolls_out_the_built_image(stage: str, env: str) -> None:
    calls = rollout_calls(stages()[stage])
    assert len(calls) == 1
    global_opts, sub, args, redirect = split_call(calls[0])
    assert sub == "run"
    assert flags(global_opts) == {"--env": env}
    assert flags(args) == {"--role": "$ROLE", "--image": "$IMAGE_ID",
                           "--junit": f"reports/{env}.xml", "--output": "json"}
    assert redirect == f"events-{env}.jsonl"


@pytest.mark.parametrize(("stage", "env"), list(DEPLOYS.items()))
def test_each_deploy_publishes_junit_and_events_even_on_failure(stage: str, env: str) -> None:
    body = stages()[stage]
    always = _block(body, body.index("always"))
    assert f"junit testResults: 'reports/{env}.xml'" in always
    assert f"archiveArtifacts artifacts: 'events-{env}.jsonl'" in always


def test_a_failing_rollout_fails_its_stage() -> None:
    # sh fails the stage on a non-zero exit, unless a pipe or `|| true` hides it.
    for stage, body in stages().items():
        for line in shell_lines(body):
            if line.startswith(ROLLOUT):
                assert "|" not in line, f"{stage}: a pipe hides rollout's exit code"
    assert "returnStatus" not in TEXT


def test_prod_waits_for_a_person() -> None:
    approve = stages()["Approve prod"]
    assert "input message:" in approve
    assert not rollout_calls(approve)


# -- the CLI contract -----------------------------------------------------------------

@pytest.mark.parametrize(("stage", "call"), all_calls(), ids=[s for s, _ in all_calls()])
def test_every_flag_exists_in_the_cli(stage: str, call: list[str]) -> None:
    global_opts, sub, args, _ = split_call(call)
    assert set(flags(global_opts)) <= option_names(cli), f"{stage}: unknown global option"
    assert sub in cli.commands, f"{stage}: `rollout {sub}` is not a command of the CLI"
    command = cli.commands[sub]
    missing = set(flags(args)) - option_names(command)
    assert not missing, f"{stage}: `rollout {sub}` has no option {sorted(missing)}"


def test_the_promote_command_exists() -> None:
    # The pipeline records passes through `run`; people promote with this.
    assert "promote" in cli.commands
    assert "--to" in option_names(cli.commands["promote"])
