"""What a bake may be asked: role, version, parent and extra vars, checked once.

The CLI (``--extra-var``), the lab builder and the AWS builder all go through
:func:`check_extra_vars`, so a name refused in one place is refused in all:

- a name is an Ansible variable name of at most :data:`MAX_VAR_NAME` characters
  (letters, digits and ``_``, not starting with a digit);
- names starting with ``rollout_`` are reserved: the bake sets
  ``rollout_role``, ``rollout_image_version``, ``rollout_image_id``,
  ``rollout_gather_facts`` and ``rollout_gather_subset`` itself, and the prefix
  is kept free for more;
- a value is text without NUL bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rollout import names
from rollout.bake.manifest import new_image_id
from rollout.config import BakeSettings, Environment, PoolSettings
from rollout.drivers.ansible_config import ProjectAnsible
from rollout.errors import ConfigError, NotFoundError
from rollout.model import BakeRequest, Image, VaultOptions

PLAYBOOK = "playbooks/bake.yml"
#: Extra-var names the bake keeps for itself.
RESERVED_PREFIX = "rollout_"
#: One limit for every backend: short enough for an AMI tag to hold a few.
MAX_VAR_NAME = 64
_VAR_NAME = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_VAR_NAME - 1}}}")


def check_extra_vars(extra_vars: Mapping[Any, Any]) -> dict[str, str]:
    """The user's extra vars, checked (see the module doc); ConfigError naming
    the first bad one."""
    checked: dict[str, str] = {}
    for key, value in extra_vars.items():
        if not isinstance(key, str) or not _VAR_NAME.fullmatch(key):
            raise ConfigError(
                f"--extra-var: {key!r} is not a valid variable name: use letters, digits "
                f"and '_' (at most {MAX_VAR_NAME}), starting with a letter or '_'"
            )
        if key.startswith(RESERVED_PREFIX):
            raise ConfigError(
                f"--extra-var: {key} is reserved: the bake sets the {RESERVED_PREFIX}* "
                "variables itself",
                hint="use --role and --version instead, or pick another name",
            )
        if not isinstance(value, str) or "\0" in value:
            raise ConfigError(f"--extra-var: the value of {key} must be text")
        checked[key] = value
    return checked


def parse_extra_vars(items: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (the CLI's repeated ``--extra-var``), checked."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--extra-var {item!r}: expected KEY=VALUE")
        pairs[key] = value
    return check_extra_vars(pairs)


def known_roles(project: Path) -> list[str]:
    """Roles that can be baked: directories under roles/ (and the first entry of
    the project's ansible.cfg roles_path) except the shared base."""
    found: set[str] = set()
    for roles in (project / "roles", ProjectAnsible(project).roles_dir):
        if roles.is_dir():
            found |= {p.name for p in roles.iterdir()
                      if p.is_dir() and p.name != "base" and not p.name.startswith(".")}
    return sorted(found)


def check_request(
    project: Path,
    role: str,
    version: str,
    *,
    parent: Image | None = None,
    extra_vars: Mapping[str, str] | None = None,
    smoke: bool = True,
    bake: BakeSettings | None = None,
    vault: VaultOptions | None = None,
    inventory: Path | None = None,
) -> BakeRequest:
    """Validate a bake request without touching anything and mint its image id."""
    names.name(role, "role", "--role")
    names.version(version, "--version")
    if role not in known_roles(project):
        known = ", ".join(known_roles(project)) or "none"
        raise NotFoundError(
            f"unknown role {role!r} (roles: {known})",
            hint=f"pass one of the roles under {project / 'roles'}",
        )
    if not (project / PLAYBOOK).is_file():
        raise ConfigError(
            f"{project / PLAYBOOK}: playbook not found",
            hint="run from the project directory (it holds playbooks/ and roles/)",
        )
    bake = bake or BakeSettings()
    return BakeRequest(
        project=project, role=role, version=version, image_id=new_image_id(role, version),
        parent=parent, extra_vars=check_extra_vars(extra_vars or {}), smoke=smoke,
        gather_facts=bake.gather_facts, gather_subset=bake.gather_subset,
        vault=vault or VaultOptions(), inventory=inventory,
    )


def smoke_settings(env: Environment, project: Path, role: str) -> PoolSettings:
    """The settings the smoke gate of a bake of ``role`` uses: the pool's, when
    the environment has a pool for ``role``; else defaults whose suite is
    smoke/<role> when that directory exists. Only the smoke settings and the
    service port are used by a bake."""
    pool = env.pools.get(role)
    if pool is not None:
        return pool.settings
    suite = f"smoke/{role}" if (project / "smoke" / role).is_dir() else None
    # The load balancer section is required by the model but unused here.
    return PoolSettings.model_validate(
        {"haproxy": {"backend": role, "frontend_port": 80}, "smoke": {"suite": suite}}
    )
