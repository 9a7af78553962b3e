"""Read an inventory with ansible-core's own machinery, in this process.

``DataLoader`` reads the files (decrypting vault files and ``!vault`` values),
``InventoryManager`` parses the sources (INI, YAML, a directory of them,
plugins such as ``constructed``), ``VariableManager`` computes each group's
variables with Ansible's precedence, and ``Templar`` templates them. What comes
back is plain Python data with the file each value came from, for
:mod:`rollout.inventory` to validate.

Ansible computes variables for hosts, not groups, and a pool's group usually
lists no hosts (rollout creates the nodes). So the variables of group G are
those Ansible computes for a probe host that is a member of G only (and so of
its parents and ``all``): exactly what a node of G would see, before host_vars.

Three process-wide pieces of Ansible state are managed here:

- its configuration is read when ``ansible.constants`` is imported. The
  project's ``ansible.cfg`` (:mod:`rollout.drivers.ansible_config`) is put in
  force by reloading that module whenever the file or an ``ANSIBLE_*``
  variable differs from the last read;
- vault secrets of inline ``!vault`` values are looked up in one
  ``VaultSecretsContext`` per process: its list is replaced on each read;
- the collection finder is installed once per process (by ``ansible.cli``),
  with the collections path in force at the first read.
"""

from __future__ import annotations

import datetime
import importlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible import constants
from ansible.cli import CLI
from ansible.errors import AnsibleError
from ansible.inventory.group import Group
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import EncryptedString, VaultHelper, VaultLib, VaultSecretsContext
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar
from ansible.utils.collection_loader import AnsibleCollectionConfig
from ansible.utils.vars import combine_vars
from ansible.vars.manager import VariableManager
from ansible.vars.plugins import get_vars_from_inventory_sources

from rollout import yamlcheck
from rollout.drivers.ansible_config import ProjectAnsible
from rollout.errors import ConfigError
from rollout.model import VaultOptions

_PROBE = "rollout-probe"
_VARS_EXTENSIONS = ("", ".yml", ".yaml", ".json")
_SKIP_SUFFIXES = (".md", ".txt", ".rst", ".orig", ".retry", ".bak", ".swp", ".cfg", "~")
_VAULT_HINT = ("pass --vault-password-file FILE or --vault-id ID@FILE (or set "
               "ANSIBLE_VAULT_PASSWORD_FILE) with the password this file was encrypted with")
# The configuration last put in force: (config file, ANSIBLE_* variables).
_loaded: list[tuple[str | None, tuple[tuple[str, str], ...]]] = []


@dataclass(frozen=True)
class Found:
    """A variable Ansible computed, templated, and the file that defines it."""

    value: Any
    source: Path
    # The text of every vault-encrypted value among the variables it was computed
    # from, so that a message about a bad value never shows one.
    secrets: frozenset[str] = frozenset()

    def redact(self, text: str) -> str:
        """``text`` with every vault value in it replaced by ``<vault>``."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "<vault>")
        return text


@dataclass(frozen=True)
class InventoryVars:
    """What an environment's inventory says, as Ansible reads it."""

    inventory: Path  # the main source, named in messages
    groups: frozenset[str]
    env: Found | None  # the environment key, from the variables of ``all``
    pools: dict[str, Found]  # group -> its pool key


def _configure(project: Path) -> None:
    """Put the project's Ansible configuration in force (see the module doc)."""
    wanted = ProjectAnsible(project).env()
    # A source Ansible cannot read is an error here, never a warning: rollout
    # must not act on half an inventory.
    wanted["ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED"] = "True"
    key = (str(project), tuple(sorted((k, v) for k, v in os.environ.items()
                                      if k.startswith("ANSIBLE_"))))
    if _loaded and _loaded[0] == key:
        return
    saved = {name: os.environ.get(name) for name in wanted}
    try:
        os.environ.update(wanted)
        importlib.reload(constants)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if AnsibleCollectionConfig.collection_finder is None:
        init_plugin_loader()
    _loaded[:] = [key]


def _vars_files(top: Path) -> Iterator[Path]:
    """The files Ansible's host_group_vars plugin reads under ``top`` (a
    group_vars or host_vars entry: a file, or a directory read recursively)."""
    if top.is_file():
        if top.suffix in _VARS_EXTENSIONS and not top.name.startswith("."):
            yield top
        return
    if top.is_dir():
        for path in sorted(top.rglob("*")):
            if path.is_file() and path.suffix in _VARS_EXTENSIONS and not any(
                    part.startswith(".") for part in path.relative_to(top).parts):
                yield path


def _entries(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if not p.name.startswith(".") and not p.name.endswith(_SKIP_SUFFIXES))


def inventory_sources(env_dir: Path) -> list[Path]:
    """The files Ansible reads as inventory sources in ``env_dir`` (everything
    but group_vars/, host_vars/ and the files Ansible ignores)."""
    return [p for p in _entries(env_dir)
            if p.is_file() or (p.is_dir() and p.name not in ("group_vars", "host_vars"))]


def _preflight(env_dir: Path, vault: VaultLib) -> None:
    """Every YAML file of the environment checked by :mod:`rollout.yamlcheck`;
    an encrypted one decrypted first, naming it when that fails."""
    files: list[tuple[Path, bool]] = []
    for source in inventory_sources(env_dir):
        for path in _vars_files(source) if source.is_dir() else [source]:
            if path.suffix in (".yml", ".yaml", ".json"):
                files.append((path, True))
    for sub in ("group_vars", "host_vars"):
        for entry in _entries(env_dir / sub):
            files += [(path, True) for path in _vars_files(entry)]
    for path, mapping in files:
        text = yamlcheck.read_text(path)
        if yamlcheck.is_vault_encrypted(text):
            text = _decrypt(vault, text, path)
        yamlcheck.check_text(text, str(path), mapping=mapping)


def _decrypt(vault: VaultLib, text: str, path: Path) -> str:
    try:
        clear: bytes = vault.decrypt(text.encode())
        return clear.decode("utf-8")
    except AnsibleError as exc:
        raise ConfigError(f"{path}: cannot decrypt this vault file: {exc.message}",
                          hint=_VAULT_HINT) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the decrypted vault file is not UTF-8 text") from None


def _secrets(loader: DataLoader, options: VaultOptions) -> VaultLib:
    """Load the vault secrets as ansible-playbook would, and make them the
    ones inline ``!vault`` values decrypt with."""
    vault_ids = [*constants.DEFAULT_VAULT_IDENTITY_LIST, *options.vault_ids]
    try:
        secrets = CLI.setup_vault_secrets(
            loader, vault_ids=vault_ids, vault_password_files=list(options.password_files),
            auto_prompt=False, initialize_context=False)
    except AnsibleError as exc:
        raise ConfigError(f"vault: {exc.message}",
                          hint="check --vault-password-file, --vault-id and "
                          "ANSIBLE_VAULT_PASSWORD_FILE") from None
    context = VaultSecretsContext.current(optional=True)
    if context is None:
        VaultSecretsContext.initialize(VaultSecretsContext(list(secrets)))
    else:
        context.secrets[:] = list(secrets)
    return VaultLib(secrets=list(secrets))


def plain(value: Any) -> Any:
    """``value`` as untagged built-in Python data (Ansible hands out tagged
    subclasses of str, int, dict... that remember where a value came from)."""
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime.datetime):
        return datetime.datetime.fromisoformat(value.isoformat())
    if isinstance(value, datetime.date):
        return datetime.date.fromordinal(value.toordinal())
    return value


def vault_values(values: Any, templar: Templar) -> set[str]:
    """The text of every vault-encrypted value in ``values`` (inline ``!vault``
    values decrypted through ``templar``; values read from encrypted files are
    tagged as such). Undecryptable values are skipped: they cannot leak."""
    found: set[str] = set()
    stack = [values]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, EncryptedString):
            try:
                found.add(str(templar.template(value)))
            except AnsibleError:
                continue
        elif isinstance(value, str) and VaultHelper.get_ciphertext(value, with_tags=False):
            found.add(str(value))
    return {text for text in found if len(text) >= 3}  # "1" in a message is no secret


def _defining_file(env_dir: Path, group: str, key: str, loader: DataLoader,
                   fallback: Path) -> Path:
    """The last group_vars file of ``group`` that sets ``key`` (the one whose
    value wins among them), else ``fallback`` (the inventory defines it)."""
    found = fallback
    gv = env_dir / "group_vars"
    for name in [group + ext for ext in _VARS_EXTENSIONS]:
        for path in _vars_files(gv / name):
            try:
                data = loader.load_from_file(str(path))
            except AnsibleError:
                continue
            if isinstance(data, Mapping) and key in data:
                found = path
    return found


def _group_files(env_dir: Path, group: str) -> list[str]:
    gv = env_dir / "group_vars"
    return [str(p) for ext in _VARS_EXTENSIONS for p in _vars_files(gv / (group + ext))]


def _own_vars(loader: DataLoader, sources: list[str], group: Group) -> dict[str, Any]:
    """The variables set on ``group`` itself: in the inventory, and by vars
    plugins (group_vars) for that group alone."""
    found: dict[str, Any] = combine_vars(
        group.get_vars(), get_vars_from_inventory_sources(loader, sources, [group], "task"))
    return found


def _computed(inventory: InventoryManager, variables: VariableManager, loader: DataLoader,
              group: str, key: str, where: Path) -> Found | None:
    """``key`` as Ansible computes and templates it for a member of ``group``
    (None when no variable of that name is set), with the vault values it
    could show."""
    probe = f"{_PROBE}-{group}"
    inventory.add_host(probe, group=group)
    host = inventory.get_host(probe)
    try:
        values = variables.get_vars(host=host, include_hostvars=False)
        if key not in values:
            return None
        templar = Templar(loader=loader, variables=values)
        return Found(plain(templar.template(values[key])), where,
                     frozenset(vault_values(values, templar)))
    except AnsibleError as exc:
        raise ConfigError(f"{where}: {key}: {exc.message}",
                          hint="fix the value (or a variable it uses); a !vault value needs "
                          "its password: --vault-password-file, --vault-id or "
                          "ANSIBLE_VAULT_PASSWORD_FILE") from None


def _strays(env_dir: Path, inventory: InventoryManager, loader: DataLoader, key: str,
            main: Path) -> None:
    """Refuse group_vars setting ``key`` for a group the inventory lacks:
    Ansible would ignore them, and the pool would silently not exist."""
    for entry in _entries(env_dir / "group_vars"):
        group = entry.stem if entry.is_file() else entry.name
        if group in inventory.groups:
            continue
        for path in _vars_files(entry):
            data = loader.load_from_file(str(path))
            if isinstance(data, Mapping) and key in data:
                raise ConfigError(f"{path}: group {group!r} is not in {main}",
                                  hint=f"add the group {group!r} to {main.name}")


def read_inventory(project: Path, env_dir: Path, *, vault: VaultOptions,
                   pool_key: str, env_key: str) -> InventoryVars:
    """The groups of ``env_dir``'s inventory, the templated ``env_key`` of
    ``all`` and the templated ``pool_key`` of every group that sets it itself;
    ConfigError naming the file for anything Ansible cannot read."""
    _configure(project)
    sources = inventory_sources(env_dir)
    if not sources:
        raise ConfigError(
            f"{env_dir}: no inventory: expected hosts.yml, hosts.ini, hosts or another "
            "Ansible inventory source there",
            hint="create inventories/ENV/hosts.yml (or an INI hosts file)")
    main = next((p for n in ("hosts.yml", "hosts.yaml", "hosts", "hosts.ini")
                 if (p := env_dir / n) in sources), sources[0])
    loader = DataLoader()
    loader.set_basedir(str(project))
    _preflight(env_dir, _secrets(loader, vault))
    try:
        inventory = InventoryManager(loader=loader, sources=[str(env_dir)])
    except AnsibleError as exc:
        raise ConfigError(f"{env_dir}: {exc.message}",
                          hint="Ansible's warnings above say why; check with "
                          f"ansible-inventory -i {env_dir} --graph") from None
    _strays(env_dir, inventory, loader, pool_key, main)
    variables = VariableManager(loader=loader, inventory=inventory)
    plain_sources = [str(env_dir)]
    groups = frozenset(inventory.groups) - {"all", "ungrouped"}
    pools: dict[str, Found] = {}
    for name in sorted(groups):
        group = inventory.groups[name]
        try:
            own = _own_vars(loader, plain_sources, group)
        except AnsibleError as exc:
            files = ", ".join(_group_files(env_dir, name)) or str(main)
            raise ConfigError(f"{files}: {exc.message}") from None
        if pool_key not in own:
            continue
        source = _defining_file(env_dir, name, pool_key, loader, main)
        found = _computed(inventory, variables, loader, name, pool_key, source)
        pools[name] = found or Found(None, source)
    env_source = _defining_file(env_dir, "all", env_key, loader,
                                env_dir / "group_vars" / "all.yml")
    env = _computed(inventory, variables, loader, "all", env_key, env_source)
    return InventoryVars(inventory=main, groups=groups, env=env, pools=pools)
