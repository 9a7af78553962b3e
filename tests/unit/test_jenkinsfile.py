"""The Jenkinsfile, the pipeline scripts it calls, and the CLI contract they rely on.

The Jenkinsfile is read as text: its stages and their order, and the one
``scripts/pipeline/...`` call of each stage's ``sh`` step. The scripts are read
as text too: every ``rollout_in ENV COMMAND --flag`` they run must name a
command and flags of ``rollout.cli.cli``. A CLI change that breaks the
pipeline fails here first. What the scripts do is in test_pipeline_scripts.py.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import click
import pytest

from rollout.cli import cli

REPO = Path(__file__).resolve().parents[2]
TEXT = (REPO / "Jenkinsfile").read_text()
SCRIPTS = REPO / "scripts" / "pipeline"
ENVS = ("dev", "staging", "prod")
DEPLOYS = {f"Deploy {env}": env for env in ENVS}
PROMOTES = {"Promote staging": "staging", "Promote prod": "prod"}


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
    """The lines of the ``sh '''...'''`` steps of a stage body (``script:`` ones too)."""
    lines = []
    for script in re.findall(r"(?:sh|script:)\s*'''(.*?)'''", body, flags=re.S):
        lines += [line.strip() for line in script.replace("\\\n", " ").splitlines()
                  if line.strip()]
    return lines


def script_call(stage: str) -> list[str]:
    """The one command of a stage: ``scripts/pipeline/NAME [ARGS]``."""
    lines = shell_lines(stages()[stage])
    assert len(lines) == 1, f"{stage}: one script call and nothing else, got {lines}"
    argv = shlex.split(lines[0])
    assert argv[0].startswith("scripts/pipeline/"), f"{stage}: calls {argv[0]}"
    return argv


# -- the pipeline's shape ---------------------------------------------------------

def test_stages_in_order() -> None:
    assert list(stages()) == ["Build", "Deploy dev", "Promote staging", "Deploy staging",
                              "Approve prod", "Promote prod", "Deploy prod"]


def test_parameters() -> None:
    assert re.search(r"string\(name: 'ROLE', defaultValue: 'web'", TEXT)
    assert re.search(r"string\(name: 'VERSION'", TEXT)


def test_every_stage_but_the_approval_calls_one_pipeline_script() -> None:
    expected = {"Build": ["scripts/pipeline/build"]}
    expected |= {stage: ["scripts/pipeline/deploy", env] for stage, env in DEPLOYS.items()}
    expected |= {stage: ["scripts/pipeline/promote", env] for stage, env in PROMOTES.items()}
    assert {stage: script_call(stage) for stage in expected} == expected
    assert not shell_lines(stages()["Approve prod"])
    # nothing else in the file runs rollout directly
    assert ".venv/bin/rollout " not in TEXT


def test_every_called_script_exists_and_is_executable() -> None:
    for stage in [s for s in stages() if s != "Approve prod"]:
        path = REPO / script_call(stage)[0]
        assert path.is_file() and os.access(path, os.X_OK), f"{stage}: {path}"


def test_the_build_stage_passes_the_image_id_to_every_later_stage() -> None:
    build = stages()["Build"]
    assert re.search(r"env\.IMAGE_ID = sh\(returnStdout: true, script: '''\s*"
                     r"scripts/pipeline/build\s*'''\)\.trim\(\)", build)
    # Later stages neither bake nor choose an image: deploy and promote take
    # $IMAGE_ID, which env.IMAGE_ID puts in their environment.
    later = [s for s in stages() if s != "Build"]
    for stage in later:
        assert "IMAGE_ID =" not in stages()[stage], f"{stage} sets the image id"
        assert "scripts/pipeline/build" not in stages()[stage]
    lib = (SCRIPTS / "lib.sh").read_text()
    assert 'if [[ -n "${IMAGE_ID:-}" ]]; then' in lib
    for name in ("deploy", "promote"):
        assert 'id="$(image_id)"' in (SCRIPTS / name).read_text()


@pytest.mark.parametrize(("stage", "env"), list(DEPLOYS.items()))
def test_each_deploy_publishes_junit_and_events_even_on_failure(stage: str, env: str) -> None:
    body = stages()[stage]
    always = _block(body, body.index("always"))
    assert f"junit testResults: 'reports/{env}/*.xml'" in always
    assert f"archiveArtifacts artifacts: 'reports/{env}/events.jsonl'" in always
    deploy = (SCRIPTS / "deploy").read_text()
    assert '--junit "reports/$env/smoke.xml"' in deploy
    assert '> "reports/$env/events.jsonl"' in deploy


def test_a_failing_step_fails_its_stage() -> None:
    # sh fails the stage on a non-zero exit, unless a pipe or `|| true` hides it.
    for stage, body in stages().items():
        for line in shell_lines(body):
            assert "|" not in line, f"{stage}: a pipe or || hides the exit code"
    assert "returnStatus" not in TEXT
    assert "set -euo pipefail" in (SCRIPTS / "lib.sh").read_text()
    for name in ("lib.sh", "build", "deploy", "promote", "run-local.sh"):
        text = (SCRIPTS / name).read_text()
        assert "|| true" not in text, f"scripts/pipeline/{name} hides a failure"
        if name != "lib.sh":
            assert 'source "$(dirname "$0")/lib.sh"' in text


def test_prod_waits_for_a_person() -> None:
    names = list(stages())
    approve = stages()["Approve prod"]
    assert "input message:" in approve
    assert "submitterParameter" in approve  # the approver is who promotes
    assert names.index("Approve prod") < names.index("Promote prod") < names.index("Deploy prod")


# -- the CLI contract -----------------------------------------------------------------

def rollout_calls() -> list[tuple[str, list[str]]]:
    """(script, argv after ``rollout_in ENV``) of every rollout call in the scripts."""
    calls = []
    for path in sorted(SCRIPTS.iterdir()):
        text = path.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if "rollout_in " not in line or line.strip().startswith(("#", "rollout_in()")):
                continue
            call = line[line.index("rollout_in "):].split(" | ")[0]
            argv = shlex.split(call)[2:]
            if argv:
                for stop in (">", ">&2"):
                    if stop in argv:
                        argv = argv[:argv.index(stop)]
                calls.append((path.name, argv))
    return calls


def option_names(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in param.opts}


def test_the_scripts_run_build_run_promote_and_lab() -> None:
    assert {argv[0] for _, argv in rollout_calls()} == {"build", "run", "images", "promote",
                                                        "lab"}


@pytest.mark.parametrize(("script", "argv"), rollout_calls(),
                         ids=[f"{s}-{a[0]}" for s, a in rollout_calls()])
def test_every_command_and_flag_exists_in_the_cli(script: str, argv: list[str]) -> None:
    argv = list(argv)
    command: click.Command = cli
    while isinstance(command, click.Group):
        sub = argv.pop(0)
        assert sub in command.commands, f"{script}: `rollout ... {sub}` is not a command"
        command = command.commands[sub]
    missing = {a for a in argv if a.startswith("--")} - option_names(command)
    assert not missing, f"{script}: `{command.name}` has no option {sorted(missing)}"
    assert {"--project", "--data-dir", "--env"} <= option_names(cli)
