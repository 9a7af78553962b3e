"""The project's Ansible configuration, for every Ansible that rollout runs.

A project may keep an ``ansible.cfg`` at its root (next to ``inventories/`` and
``roles/``), as Ansible projects do. Ansible itself looks for one in the
current directory; rollout also runs from elsewhere (``--project DIR``, Jenkins
workspaces), so it points ``ANSIBLE_CONFIG`` at the project's file whenever it
reads an inventory in-process or runs ``ansible-playbook`` or
``ansible-galaxy``. An ``ANSIBLE_CONFIG`` the operator set wins, as it does for
Ansible.

Where the file does not set them, the project's ``roles/`` is the roles path and
its ``collections/`` comes first on the collections path, so roles and
collections installed from ``requirements.yml`` are found.

Only the standard library here: reading this must not import Ansible.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path

CONFIG_NAME = "ansible.cfg"
_DEFAULT_COLLECTIONS = ("~/.ansible/collections", "/usr/share/ansible/collections")


@dataclass(frozen=True)
class ProjectAnsible:
    """The Ansible settings of the project at ``project``."""

    project: Path

    @property
    def config(self) -> Path | None:
        """The configuration file Ansible will read: the operator's
        ``ANSIBLE_CONFIG``, else the project's ``ansible.cfg``, else None
        (Ansible's own search: ~/.ansible.cfg, /etc/ansible/ansible.cfg)."""
        chosen = os.environ.get("ANSIBLE_CONFIG")
        if chosen:
            return Path(chosen)
        path = self.project / CONFIG_NAME
        return path if path.is_file() else None

    def _defaults(self) -> configparser.SectionProxy | None:
        path = self.config
        if path is None or not path.is_file():
            return None
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            return None  # Ansible reports a broken file itself, naming it
        return parser["defaults"] if parser.has_section("defaults") else None

    def sets(self, *keys: str) -> bool:
        """Whether the configuration file sets any of ``keys`` in [defaults]."""
        defaults = self._defaults()
        return defaults is not None and any(key in defaults for key in keys)

    @property
    def roles_dir(self) -> Path:
        """Where ``requirements.yml`` roles are installed: the first entry of the
        file's ``roles_path`` (relative to the file), else the project's roles/."""
        return self._first_path("roles_path") or self.project / "roles"

    @property
    def collections_dir(self) -> Path:
        """Where ``requirements.yml`` collections are installed: the first entry
        of the file's collections path, else the project's collections/."""
        return (self._first_path("collections_path")
                or self._first_path("collections_paths")
                or self.project / "collections")

    def _first_path(self, key: str) -> Path | None:
        defaults = self._defaults()
        if defaults is None or key not in defaults or self.config is None:
            return None
        first = defaults[key].split(os.pathsep)[0].strip()
        if not first:
            return None
        path = Path(os.path.expanduser(first))
        return path if path.is_absolute() else (self.config.parent / path).resolve()

    def env(self) -> dict[str, str]:
        """Variables that make an Ansible process read this project's settings."""
        found: dict[str, str] = {}
        config = self.config
        if config is not None:
            found["ANSIBLE_CONFIG"] = str(config)
        if not os.environ.get("ANSIBLE_ROLES_PATH") and not self.sets("roles_path"):
            found["ANSIBLE_ROLES_PATH"] = str(self.project / "roles")
        if not os.environ.get("ANSIBLE_COLLECTIONS_PATH") and not self.sets(
                "collections_path", "collections_paths"):
            found["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(
                [str(self.project / "collections"), *_DEFAULT_COLLECTIONS])
        return found
