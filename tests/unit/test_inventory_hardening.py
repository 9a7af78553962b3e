"""The inventory loader against hostile files (issue 14, item 10): YAML alias
bombs fail fast, and a smoke suite must really lie inside the project."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from rollout.errors import ConfigError
from rollout.inventory import load_environment
from tests.inputs.corpus import REPO

BOMB = REPO / "tests/inputs/yaml-alias-bomb/project/inventories/lab/hosts.yml"


def _project(tmp_path: Path, name: str = "proj") -> Path:
    dest = tmp_path / name
    dest.mkdir()
    shutil.copytree(REPO / "inventories", dest / "inventories")
    shutil.copytree(REPO / "smoke", dest / "smoke")
    (dest / "roles").symlink_to(REPO / "roles")
    return dest


def test_an_alias_bomb_in_hosts_yml_fails_fast(tmp_path: Path) -> None:
    project = _project(tmp_path)
    shutil.copyfile(BOMB, project / "inventories/lab/hosts.yml")
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"hosts.yml: its aliases expand to [\d,]+ values"):
        load_environment(project, "lab")
    assert time.monotonic() - started < 2.0


def test_an_alias_bomb_in_group_vars_fails_fast(tmp_path: Path) -> None:
    project = _project(tmp_path)
    web = project / "inventories/lab/group_vars/web.yml"
    bomb = "\n".join(line for line in BOMB.read_text().splitlines()
                     if line.startswith(("level", "#")))
    # The pool's settings refer to the bomb: a validation error would print it.
    web.write_text(bomb + "\n" + web.read_text().replace("pool_size: 4", "pool_size: *l12"))
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"web.yml: its aliases expand to"):
        load_environment(project, "lab")
    assert time.monotonic() - started < 2.0


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    project = _project(tmp_path)
    hosts = project / "inventories/lab/hosts.yml"
    hosts.write_text(hosts.read_text() + "loop: &loop {children: {again: *loop}}\n")
    with pytest.raises(ConfigError, match=r"an alias refers to a value that contains it"):
        load_environment(project, "lab")


def test_ordinary_aliases_still_load(tmp_path: Path) -> None:
    project = _project(tmp_path)
    hosts = project / "inventories/lab/hosts.yml"
    hosts.write_text(
        "x-empty: &empty {hosts: {}}\n"
        "all:\n  children:\n    lb:\n      hosts:\n        lab-lb: {ansible_connection: local}\n"
        "    web: *empty\n    api: *empty\n"
    )
    assert "web" in load_environment(project, "lab").pools


def test_a_smoke_suite_in_a_sibling_whose_name_extends_the_projects_is_outside(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path, "proj")
    evil = tmp_path / "proj-evil"
    evil.mkdir()
    (evil / "test_x.py").write_text("def test_x():\n    pass\n")
    web = project / "inventories/lab/group_vars/web.yml"
    web.write_text(web.read_text().replace("suite: smoke/web", "suite: ../proj-evil"))
    with pytest.raises(ConfigError, match=r"rollout.smoke.suite: '../proj-evil' is not a "
                                          r"directory inside"):
        load_environment(project, "lab")
