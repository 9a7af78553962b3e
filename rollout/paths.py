"""The data directory: base cache, images, journal, logs and the lab's runtime files.

Chosen by ``--data-dir``, else ``$ROLLOUT_DATA_DIR``, else ``/var/lib/rollout``
for root and ``~/.local/share/rollout`` for anyone else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_data_dir() -> Path:
    env = os.environ.get("ROLLOUT_DATA_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/rollout")
    return Path.home() / ".local" / "share" / "rollout"


@dataclass(frozen=True)
class DataDir:
    root: Path

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

    def ensure(self) -> DataDir:
        for path in (self.root, self.images, self.logs, self.lab, self.evidence):
            path.mkdir(parents=True, exist_ok=True)
        return self
