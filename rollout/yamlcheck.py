"""A first look at each YAML file of an inventory, before Ansible reads it.

Ansible's own loader reports a broken file without naming it ("YAML parsing
failed: month must be in 1..12"), and a small file whose aliases expand to
billions of nodes ("billion laughs") makes its templating run for ever. So
every YAML or JSON file Ansible will read for an environment is first parsed
here with PyYAML (never executed, never templated), and refused with a message
that names the file and line when it is not YAML, cannot be built, nests too
deeply or expands to more than :data:`MAX_NODES` nodes. Only the checks live
here: what the values mean is Ansible's business (:mod:`rollout.drivers.ansible_vars`).

A file that starts with ``$ANSIBLE_VAULT`` is encrypted as a whole: it is left
to Ansible, which decrypts it. Inline ``!vault`` and ``!unsafe`` values are
accepted as opaque text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rollout.errors import ConfigError

#: The most nodes (scalars, sequences, mappings) a file may expand to once its
#: aliases are followed. The lab's largest group_vars holds about 60.
MAX_NODES = 100_000
VAULT_HEADER = "$ANSIBLE_VAULT"


class _AnsibleTags(yaml.SafeLoader):
    """PyYAML's safe loader (the pure-Python one: a file nested too deeply ends in a
    RecursionError we report, not in libyaml's own limit), also accepting
    Ansible's ``!vault`` and ``!unsafe``."""


def _opaque(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_AnsibleTags.add_constructor("!vault", _opaque)
_AnsibleTags.add_constructor("!unsafe", _opaque)


def is_vault_encrypted(text: str) -> bool:
    return text.lstrip().startswith(VAULT_HEADER)


def _expanded_size(root: yaml.Node, where: str) -> int:
    """How many values ``root`` stands for once every alias is followed. An
    alias is the same node object composed again, so each distinct node is
    counted once (memoised by identity) and the count itself stays cheap."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the current path: an alias back to one is a loop
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative: a deeply nested file must not exhaust the stack here
        node, done = stack.pop()
        key = id(node)
        if done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise ConfigError(f"{where}: an alias refers to a value that contains it",
                              hint="remove the recursive alias (&name ... *name)")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_text(text: str, where: str, *, mapping: bool) -> Any:
    """The document in ``text`` (from the file ``where``), checked as the module
    doc says; ``mapping``: it must be a mapping (or empty), as a vars file is."""
    try:
        loader = _AnsibleTags(text)
        try:
            root = loader.get_single_node()
            count = _expanded_size(root, where) if root is not None else 0
            if count > MAX_NODES:
                raise ConfigError(
                    f"{where}: its aliases expand to {count:,} values (at most "
                    f"{MAX_NODES:,}): refusing a YAML alias bomb",
                    hint="write the values out, or use fewer nested aliases (*name)",
                )
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML{at}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: not valid YAML: nested too deeply") from None
    except ConfigError:
        raise
    except Exception as exc:
        # The loader only parses this text, so any failure is the file's: PyYAML's
        # constructors raise ValueError, IndexError, AttributeError... for
        # scalars they cannot build (2020-13-45, `!!int four`, a bare `!!int`).
        raise ConfigError(f"{where}: a value cannot be read as YAML: "
                          f"{type(exc).__name__}: {exc}",
                          hint="quote the value if it is meant as a string") from None
    if mapping and data is not None and not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of variables, "
                          f"got a {type(data).__name__}")
    return data


def read_text(path: Path) -> str:
    """The text of ``path``; ConfigError naming it when it is missing or unreadable."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None


def check_file(path: Path, *, mapping: bool) -> None:
    """:func:`check_text` on the file ``path``, unless it is vault-encrypted."""
    text = read_text(path)
    if not is_vault_encrypted(text):
        check_text(text, str(path), mapping=mapping)
