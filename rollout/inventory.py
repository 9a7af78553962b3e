"""Read an environment's inventory: ``inventories/ENV/``.

``hosts.yml`` has a group per role plus ``lb``; ``group_vars/ROLE.yml`` holds the
pool's settings under the key ``rollout``, and ``group_vars/all.yml`` the
environment's (the lab network, for instance) under ``rollout_env``. Everything is
validated here (against :mod:`rollout.config`), before any side effect, and each
error names the file and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rollout import names
from rollout.config import Environment, EnvSettings, Pool, PoolSettings, validate_model
from rollout.errors import ConfigError, NotFoundError

#: The most values a file may stand for once its aliases are expanded. A real
#: inventory is far below; "billion laughs" (an alias of a list of aliases of
#: a list...) is far above, and walking or printing it would never end.
MAX_EXPANDED_VALUES = 100_000


def _expanded_size(root: yaml.Node, path: Path) -> int:
    """How many values the node graph stands for with every alias expanded,
    counted once per distinct node (so the count itself stays cheap)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{path}: an alias refers to a value that contains it",
                              hint="remove the recursive alias (&name ... *name)")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _load_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load``, refusing a file whose aliases expand too far."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        count = _expanded_size(root, path)
        if count > MAX_EXPANDED_VALUES:
            raise ConfigError(
                f"{path}: its aliases expand to {count:,} values (at most "
                f"{MAX_EXPANDED_VALUES:,}): refusing a YAML alias bomb",
                hint="write the values out, or use fewer nested aliases (*name)",
            )
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return _load_yaml(text, path)
    except ConfigError:
        raise
    except yaml.YAMLError as exc:
        mark = exc.problem_mark if isinstance(exc, yaml.MarkedYAMLError) else None
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    except Exception as exc:
        # safe_load only parses this text, so any failure is the file's: PyYAML's
        # constructors raise ValueError, IndexError, AttributeError... for
        # scalars they cannot build (2020-13-45, `!!int four`, a bare `!!int`).
        raise ConfigError(f"{path}: a value cannot be read as YAML: "
                          f"{type(exc).__name__}: {exc}",
                          hint="quote the value if it is meant as a string") from None


def _groups(inventory: Any, path: Path) -> set[str]:
    if inventory is None:
        return set()
    if not isinstance(inventory, dict):
        raise ConfigError(f"{path}: expected a mapping of groups at the top level")
    found: set[str] = set()
    walked: set[int] = set()  # aliases share groups: walk each mapping once

    def walk(node: Any, where: str) -> None:
        if node is None or id(node) in walked:
            return
        if not isinstance(node, dict):
            raise ConfigError(f"{path}: {where} must be a mapping")
        walked.add(id(node))
        children = node.get("children") or {}
        if not isinstance(children, dict):
            raise ConfigError(f"{path}: {where}.children must be a mapping of groups")
        for group, body in children.items():
            found.add(str(group))
            walk(body, f"{where}.children.{group}")

    for top, body in inventory.items():
        found.add(str(top))
        walk(body, str(top))
    return found


def project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding ``inventories/``."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "inventories").is_dir() and (candidate / "roles").is_dir():
            return candidate
    raise ConfigError(
        f"{here}: no inventories/ and roles/ here or above",
        hint="run rollout from the project directory, or pass --project DIR",
    )


def load_environment(project: Path, env: str) -> Environment:
    """Read and validate ``inventories/ENV`` completely, touching nothing."""
    names.name(env, "environment", "--env")
    base = project / "inventories" / env
    if not base.is_dir():
        known = sorted(p.name for p in (project / "inventories").glob("*") if p.is_dir())
        raise NotFoundError(
            f"{base}: no such environment {env!r} (known: {', '.join(known) or 'none'})",
            hint="pass --env with one of the known environments",
        )
    inventory = next(
        (base / n for n in ("hosts.yml", "hosts.yaml", "hosts") if (base / n).is_file()), None
    )
    if inventory is None:
        raise ConfigError(f"{base}: no hosts.yml inventory",
                          hint="create inventories/ENV/hosts.yml")
    groups = _groups(_read_yaml(inventory), inventory)

    all_vars_path = base / "group_vars" / "all.yml"
    env_data: Any = {}
    if all_vars_path.is_file():
        all_vars = _read_yaml(all_vars_path) or {}
        if not isinstance(all_vars, dict):
            raise ConfigError(f"{all_vars_path}: expected a mapping of variables")
        env_data = all_vars.get("rollout_env", {})
    env_settings = validate_model(EnvSettings, env_data, str(all_vars_path), "rollout_env")

    pools: dict[str, Pool] = {}
    gv = base / "group_vars"
    for path in sorted(gv.glob("*.yml")) if gv.is_dir() else []:
        group = path.stem
        if group in ("all", "lb"):
            continue
        data = _read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of variables")
        if "rollout" not in data:
            continue
        try:
            names.name(group, "group", str(path))
        except ConfigError as exc:
            raise ConfigError(f"{path}: the group name is not a valid role name: {exc}") from None
        if group not in groups:
            raise ConfigError(
                f"{path}: group {group!r} is not in {inventory}",
                hint=f"add {group!r} under all.children in {inventory.name}",
            )
        settings = validate_model(PoolSettings, data["rollout"], str(path), "rollout")
        if settings.smoke.suite is not None:
            suite = (project / settings.smoke.suite).resolve()
            # is_relative_to, not a string prefix: ../proj-evil starts with .../proj.
            if not suite.is_dir() or not suite.is_relative_to(project.resolve()):
                raise ConfigError(
                    f"{path}: rollout.smoke.suite: {settings.smoke.suite!r} is not a directory "
                    f"inside {project}",
                    hint="point it at the role's testinfra suite, e.g. smoke/web",
                )
        pools[group] = Pool(env=env, role=group, settings=settings, source=path)

    backends = [(r, p.settings.haproxy) for r, p in pools.items() if p.settings.haproxy]
    seen_ports: dict[int, str] = {}
    seen_backends: dict[str, str] = {}
    for role, hap in backends:
        assert hap is not None
        if hap.frontend_port in seen_ports:
            raise ConfigError(
                f"{pools[role].source}: rollout.haproxy.frontend_port {hap.frontend_port} is "
                f"already used by pool {seen_ports[hap.frontend_port]!r}"
            )
        if hap.backend in seen_backends:
            raise ConfigError(
                f"{pools[role].source}: rollout.haproxy.backend {hap.backend!r} is already "
                f"used by pool {seen_backends[hap.backend]!r}"
            )
        seen_ports[hap.frontend_port] = role
        seen_backends[hap.backend] = role
    return Environment(
        name=env, path=base, settings=env_settings, pools=pools, inventory=inventory
    )
