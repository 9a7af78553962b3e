"""``rollout pool add ROLE``: a new pool in one command, no Python.

It writes (see :mod:`rollout.app.scaffold`), refusing to overwrite anything:

| path                                   | when                                   |
|----------------------------------------|----------------------------------------|
| roles/ROLE/...                         | the project has no role ROLE           |
| smoke/ROLE/{conftest.py,test_ROLE.py}  | always (refused if smoke/ROLE exists)  |
| inventories/ENV/hosts-ROLE.yml         | the inventory has no group ROLE        |
| inventories/ENV/group_vars/ROLE.yml    | always (refused if ROLE has group_vars)|

Everything is checked before the first file is written: the names, the port
(free among the environment's pools), and the new pool's settings. The
environment is then read again, as every command will read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rollout import names
from rollout.app import scaffold
from rollout.app.workspace import Workspace
from rollout.config import PoolSettings, validate_model
from rollout.errors import ConfigError
from rollout.inventory import load_environment
from rollout.yamlcheck import check_text

#: The first frontend port offered when the environment has no HAProxy pool.
FIRST_PORT = 8081


@dataclass(frozen=True)
class NewPool:
    """What ``pool add`` made: the pool's frontend port and the files written."""

    role: str
    env: str
    port: int
    created: tuple[Path, ...]
    role_existed: bool


def _free_port(ws: Workspace, port: int | None, role: str) -> int:
    used = {p.settings.haproxy.frontend_port: r for r, p in ws.env.pools.items()
            if p.settings.haproxy is not None}
    if port is None:
        return max(used, default=FIRST_PORT - 1) + 1
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port: {port} is not a TCP port (1-65535)")
    if port in used:
        raise ConfigError(f"--port: {port} is already the frontend of pool {used[port]!r}",
                          hint=f"pick another port for {role}, or leave --port out")
    return port


def _refuse_existing(paths: list[Path], what: str) -> None:
    for path in paths:
        if path.exists() or path.is_symlink():
            raise ConfigError(f"{path}: already exists; rollout pool add never overwrites",
                              hint=f"{what}, or remove {path} first")


def plan_files(ws: Workspace, role: str, port: int) -> dict[Path, str]:
    """The files ``pool add`` would write, by path (nothing is written)."""
    env_dir = ws.env.path
    fill = {"role": role, "var": role.replace("-", "_"), "port": port, "env": ws.env.name}
    files: dict[Path, str] = {}
    role_dir = ws.project / "roles" / role
    if not role_dir.exists():
        for rel, text in scaffold.ROLE_FILES.items():
            files[role_dir / rel] = text.format(**fill)
    smoke = ws.project / "smoke" / role
    for rel, text in scaffold.SMOKE_FILES.items():
        files[smoke / rel.format(**fill)] = text.format(**fill)
    if role not in ws.env.groups:
        files[env_dir / f"hosts-{role}.yml"] = scaffold.INVENTORY_FILE.format(**fill)
    files[env_dir / "group_vars" / f"{role}.yml"] = scaffold.GROUP_VARS.format(**fill)
    return files


def add_pool(ws: Workspace, role: str, port: int | None = None) -> NewPool:
    """Scaffold the pool ``role`` in ``ws``'s environment; see the module doc."""
    names.name(role, "role", "ROLE")
    if role in ws.env.pools:
        raise ConfigError(f"{ws.env.pools[role].source}: the pool {role!r} already exists "
                          f"in environment {ws.env.name!r}",
                          hint="edit its settings there instead")
    if role in ("all", "ungrouped", "lb", "base"):
        raise ConfigError(f"ROLE: {role!r} is reserved; pick another role name")
    chosen = _free_port(ws, port, role)
    gv = ws.env.path / "group_vars"
    _refuse_existing([gv / f"{role}{ext}" for ext in ("", ".yml", ".yaml", ".json")],
                     "edit the existing group_vars")
    _refuse_existing([ws.project / "smoke" / role], "keep the existing suite")
    files = plan_files(ws, role, chosen)
    _refuse_existing(list(files), "nothing was written")
    for path, text in files.items():  # every YAML file we write must read back
        if path.suffix == ".yml":
            check_text(text, str(path), mapping=False)
    settings = check_text(files[gv / f"{role}.yml"], str(gv / f"{role}.yml"), mapping=True)
    validate_model(PoolSettings, settings["rollout"], str(gv / f"{role}.yml"), "rollout")
    role_existed = (ws.project / "roles" / role).exists()
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    load_environment(ws.project, ws.env.name, ws.vault)  # reads as every command will
    return NewPool(role=role, env=ws.env.name, port=chosen, created=tuple(files),
                   role_existed=role_existed)
