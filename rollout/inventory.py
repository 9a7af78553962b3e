"""Read an environment's inventory: ``inventories/ENV/``, as Ansible reads it.

The directory is an Ansible inventory like any other: sources in any format
Ansible accepts (``hosts.yml``, an INI ``hosts``, several files, plugin configs
such as ``constructed``), ``group_vars/`` and ``host_vars/`` as files or
directories, vault-encrypted files and ``!vault`` values. Ansible's own
machinery reads it (:mod:`rollout.drivers.ansible_vars`), so precedence and
templating are Ansible's.

A pool is a group that sets the key ``rollout`` itself (in its group_vars, or
in the inventory); its settings are that key as Ansible computes it for the
group. The environment's settings (the lab network, for instance) are
``rollout_env`` as Ansible computes it for ``all``. Everything is validated here
(against :mod:`rollout.config`), before any side effect, and each error names
the file and key.
"""

from __future__ import annotations

from pathlib import Path

from rollout import names
from rollout.config import Environment, EnvSettings, Pool, PoolSettings, validate_model
from rollout.drivers.ansible_vars import read_inventory
from rollout.errors import ConfigError, NotFoundError
from rollout.model import VaultOptions
from rollout.paths import find_project

#: The variable holding a pool's settings, and the environment's.
POOL_KEY = "rollout"
ENV_KEY = "rollout_env"


def project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding ``inventories/``."""
    here = (start or Path.cwd()).resolve()
    found = find_project(here)
    if found is not None:
        return found
    raise ConfigError(
        f"{here}: no inventories/ and roles/ here or above",
        hint="run rollout from the project directory, or pass --project DIR",
    )


def load_environment(project: Path, env: str,
                     vault: VaultOptions | None = None) -> Environment:
    """Read and validate ``inventories/ENV`` completely, touching nothing."""
    names.name(env, "environment", "--env")
    base = project / "inventories" / env
    if not base.is_dir():
        known = sorted(p.name for p in (project / "inventories").glob("*") if p.is_dir())
        raise NotFoundError(
            f"{base}: no such environment {env!r} (known: {', '.join(known) or 'none'})",
            hint="pass --env with one of the known environments",
        )
    found = read_inventory(project, base, vault=vault or VaultOptions(),
                           pool_key=POOL_KEY, env_key=ENV_KEY)
    inventory = found.inventory
    env_where = found.env.source if found.env is not None else base / "group_vars" / "all.yml"
    try:
        env_settings = validate_model(EnvSettings, found.env.value if found.env else {},
                                      str(env_where), ENV_KEY)
    except ConfigError as exc:
        raise ConfigError(found.env.redact(exc.message) if found.env else exc.message,
                          hint=exc.hint) from None
    pools: dict[str, Pool] = {}
    for group, value in sorted(found.pools.items()):
        path = value.source
        if group in ("all", "lb"):
            continue
        try:
            names.name(group, "group", str(path))
        except ConfigError as exc:
            raise ConfigError(f"{path}: the group name is not a valid role name: {exc}") from None
        try:
            settings = validate_model(PoolSettings, value.value, str(path), POOL_KEY)
        except ConfigError as exc:
            raise ConfigError(value.redact(exc.message), hint=exc.hint) from None
        if settings.smoke.suite is not None:
            root = project.resolve()
            suite = (project / settings.smoke.suite).resolve()
            if not suite.is_dir() or not suite.is_relative_to(root):
                raise ConfigError(
                    f"{path}: rollout.smoke.suite: {settings.smoke.suite!r} is not a directory "
                    f"inside {project}",
                    hint="point it at the role's testinfra suite, e.g. smoke/web",
                )
        _check_hooks(project, path, settings)
        pools[group] = Pool(env=env, role=group, settings=settings, source=path)
    _distinct_frontends(pools)
    return Environment(
        name=env, path=base, settings=env_settings, pools=pools, inventory=inventory,
        groups=found.groups,
    )


def _check_hooks(project: Path, source: Path, settings: PoolSettings) -> None:
    """Each hook's playbook is a file inside the project (a symlink out of it is
    refused too), before anything runs."""
    root = project.resolve()
    for point, hook in settings.hooks.configured():
        playbook = (project / hook.playbook).resolve()
        if not playbook.is_file() or not playbook.is_relative_to(root):
            raise ConfigError(
                f"{source}: {POOL_KEY}.hooks.{point.value}.playbook: {hook.playbook!r} is not "
                f"a playbook file inside {project}",
                hint="give a path relative to the project, e.g. playbooks/hooks/carry-state.yml",
            )


def _distinct_frontends(pools: dict[str, Pool]) -> None:
    """Two pools on one HAProxy frontend port or backend would fight over it."""
    seen_ports: dict[int, str] = {}
    seen_backends: dict[str, str] = {}
    for role, pool in pools.items():
        hap = pool.settings.haproxy
        if hap is None:
            continue
        if hap.frontend_port in seen_ports:
            raise ConfigError(
                f"{pool.source}: rollout.haproxy.frontend_port {hap.frontend_port} is "
                f"already used by pool {seen_ports[hap.frontend_port]!r}"
            )
        if hap.backend in seen_backends:
            raise ConfigError(
                f"{pool.source}: rollout.haproxy.backend {hap.backend!r} is already "
                f"used by pool {seen_backends[hap.backend]!r}"
            )
        seen_ports[hap.frontend_port] = role
        seen_backends[hap.backend] = role
