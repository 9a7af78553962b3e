"""The one extra-var validator (shared by the CLI and every builder) and the
checks of a bake request, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.bake.request import MAX_VAR_NAME, check_extra_vars, check_request, parse_extra_vars
from rollout.errors import ConfigError, NotFoundError
from tests.inputs.corpus import REPO, run_cli


@pytest.mark.parametrize("name", ["web_port", "_private", "A1", "x" * MAX_VAR_NAME,
                                  "rolloutish", "my_rollout_var"])
def test_valid_names_pass(name: str) -> None:
    assert check_extra_vars({name: "v"}) == {name: "v"}


@pytest.mark.parametrize(("name", "why"), [
    ("x" * (MAX_VAR_NAME + 1), "not a valid variable name"),  # 65: one limit everywhere
    ("1abc", "not a valid variable name"),
    ("a;touch /tmp/x", "not a valid variable name"),
    ("a-b", "not a valid variable name"),
    ("caf\u00e9", "not a valid variable name"),  # isidentifier() would take it
    ("", "not a valid variable name"),
    ("rollout_role", "reserved"),
    ("rollout_image_id", "reserved"),
    ("rollout_anything_else", "reserved"),  # the whole prefix, on every backend
])
def test_bad_names_are_refused(name: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        check_extra_vars({name: "v"})


def test_values_must_be_text_without_nul() -> None:
    with pytest.raises(ConfigError, match="must be text"):
        check_extra_vars({"a": "x\0y"})
    with pytest.raises(ConfigError, match="must be text"):
        check_extra_vars({"a": 1})


def test_the_cli_form_is_key_equals_value() -> None:
    assert parse_extra_vars(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_extra_vars(["novalue"])
    with pytest.raises(ConfigError, match="reserved"):
        parse_extra_vars(["rollout_image_version=9"])


def test_a_request_mints_an_image_id_and_checks_the_role(tmp_path: Path) -> None:
    request = check_request(REPO, "web", "2.0.0", extra_vars={"web_port": "1"})
    assert request.image_id.startswith("web-2.0.0-")
    assert request.extra_vars == {"web_port": "1"} and request.smoke
    with pytest.raises(NotFoundError, match=r"unknown role 'db' \(roles: web\)"):
        check_request(REPO, "db", "2.0.0")
    with pytest.raises(ConfigError, match="version"):
        check_request(REPO, "web", "2.0.0;rm")


def test_the_cli_refuses_a_reserved_extra_var_before_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    outcome = run_cli(["--project", str(REPO), "build", "--role", "web", "--version", "2.0.0",
                       "--extra-var", "rollout_role=db"], data)
    assert outcome.code == 2, outcome.output
    assert "--extra-var: rollout_role is reserved" in outcome.output
    assert not data.exists()
