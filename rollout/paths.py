"""The data directory: base cache, images, journal, logs and the lab's runtime files.

Chosen by ``--data-dir``, else ``$ROLLOUT_DATA_DIR``, else ``/var/lib/rollout``
for root and ``~/.local/share/rollout`` for anyone else.

The directory is private to its owner: the journal holds every pool's settings
(``aws.user_data`` included), and the logs, crash reports and forensics quote
nodes' output. So the root is mode 0700 (tightened when found looser), the
directories made here 0700 and the files 0600 (:data:`PRIVATE_FILE`); the CLI
also runs with umask 077 so that files made by the programs it starts (Ansible's
artifacts, pytest's JUnit files...) are private too.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
#: The umask the CLI runs with (files 0600, directories 0700).
PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) and leave ``path`` itself at 0700,
    whatever the umask; an existing directory is tightened. Missing parents get
    the umask's usual modes: they are not ours to hide."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    if path.stat().st_mode & 0o7777 != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)
    return path


def find_project(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding ``inventories/`` and
    ``roles/``, or None. Standard library only: the fast `rollout rollback`
    client (rollout.entry) finds the project with it too."""
    here = start.resolve()
    for candidate in (here, *here.parents):
        if (candidate / "inventories").is_dir() and (candidate / "roles").is_dir():
            return candidate
    return None


def default_data_dir() -> Path:
    env = os.environ.get("ROLLOUT_DATA_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/rollout")
    return Path.home() / ".local" / "share" / "rollout"


class DataDir:
    """The data directory's layout. A plain class, not a dataclass: the fast
    `rollout rollback` client (rollout.entry) imports this module, and the
    dataclasses module's import is a noticeable part of its start."""

    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = root

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataDir) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"DataDir(root={self.root!r})"

    @property
    def base_cache(self) -> Path:
        return self.root / "base"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def journal(self) -> Path:
        return self.root / "journal.sqlite"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lab(self) -> Path:
        """Runtime state of the lab: node records, HAProxy config, socket, pids."""
        return self.root / "lab"

    @property
    def evidence(self) -> Path:
        """JUnit files, forensics and smoke results kept per image and node."""
        return self.root / "evidence"

    def pool_evidence(self, env: str, role: str) -> Path:
        """Where the smoke gate of a pool's rollouts keeps ``<node>.xml`` (JUnit)
        and ``<node>.log``, and the reports look for them."""
        return self.evidence / env / role

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    def ensure_root(self) -> Path:
        """The root directory, made (or tightened to) 0700."""
        return private_dir(self.root)

    def ensure(self) -> DataDir:
        """The root and its usual subdirectories, each 0700."""
        self.ensure_root()
        for path in (self.images, self.logs, self.lab, self.evidence):
            private_dir(path)
        return self
