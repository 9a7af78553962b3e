"""A harness for tests and benchmarks that drive the REAL lab.

``make_project`` copies a project so its lab uses its own bridge, subnet and
frontend port (``relocate_lab`` does that for any environment of the copy);
``LabHandle`` wraps ``lab_up``/``lab_down``/``lab_status`` for that copy and
can GET the frontend to see which nodes answer.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rollout.backends.lab.env import LabStatus, lab_down, lab_status, lab_up
from rollout.backends.lab.records import LabContext
from rollout.backends.lab.system import LAB_PROGRAMS, require_programs
from rollout.config import Environment
from rollout.errors import EnvironmentProblem
from rollout.paths import DataDir


def lab_skip_reason() -> str | None:
    """Why the real lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the real lab needs root (network namespaces, bridge, systemd-nspawn)"
    try:
        require_programs(LAB_PROGRAMS)
    except EnvironmentProblem as exc:
        return str(exc)
    return None


def who_answered(body: str) -> str:
    """The node named by a response body: the ``node=NAME`` word (the web
    role's answer, e.g. ``node=web-3f9a1c version=1.0.0``), else the first line."""
    for word in body.split():
        if word.startswith("node="):
            return word[len("node="):]
    return (body.splitlines() or [""])[0].strip()


def share_base_cache(data: DataDir, shared: Path | None) -> None:
    """Point ``data``'s base cache at ``shared`` (a directory other data dirs
    use too), so the debootstrap base is built once per machine, not per run."""
    if shared is None or data.base_cache.exists():
        return
    shared.mkdir(parents=True, exist_ok=True)
    data.root.mkdir(parents=True, exist_ok=True)
    data.base_cache.symlink_to(shared.resolve(), target_is_directory=True)


def make_project(
    repo: Path, dest: Path, *, bridge: str, subnet: str, port: int
) -> Path:
    """A copy of the project at ``repo`` whose lab uses ``bridge``/``subnet`` and ``port``.

    inventories/ and smoke/ are copied (config refuses a smoke suite outside
    the project); roles/ and playbooks/ are symlinked.
    """
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(repo / "inventories", dest / "inventories")
    shutil.copytree(repo / "smoke", dest / "smoke")
    for name in ("roles", "playbooks"):
        (dest / name).symlink_to(repo / name)
    relocate_lab(dest, "lab", bridge=bridge, subnet=subnet, port=port)
    return dest


def relocate_lab(project: Path, env: str, *, bridge: str, subnet: str, port: int) -> None:
    """Rewrite ``inventories/ENV`` of a project copy so its lab uses ``bridge``,
    ``subnet`` and web frontend ``port`` (group_vars/all.yml and web.yml)."""
    gv = project / "inventories" / env / "group_vars"
    all_vars = yaml.safe_load((gv / "all.yml").read_text()) or {}
    lab = all_vars.setdefault("rollout_env", {}).setdefault("lab", {})
    lab.update({"bridge": bridge, "subnet": subnet})
    (gv / "all.yml").write_text(yaml.safe_dump(all_vars, sort_keys=False))
    web = yaml.safe_load((gv / "web.yml").read_text())
    web["rollout"]["haproxy"]["frontend_port"] = port
    (gv / "web.yml").write_text(yaml.safe_dump(web, sort_keys=False))


@dataclass
class LabHandle:
    """A running lab: its project copy, environment, data dir and helpers."""

    project: Path
    env: Environment
    data: DataDir
    events: list[str] = field(default_factory=list)
    up_seconds: float = 0.0

    @property
    def context(self) -> LabContext:
        return LabContext(self.data, self.env.settings.lab)

    @property
    def frontend(self) -> str:
        return self.status().frontend

    def up(self, nodes: int | None = None) -> LabStatus:
        return lab_up(self.project, self.env, self.data, nodes=nodes, on_event=self.events.append)

    def down(self) -> None:
        lab_down(self.env, self.data, on_event=self.events.append)

    def status(self) -> LabStatus:
        return lab_status(self.env, self.data)

    def get(self, count: int, path: str = "/", url: str | None = None,
            timeout: float = 5.0) -> Counter[str]:
        """GET the frontend ``count`` times; which node answered how often.

        A node is named as :func:`who_answered` reads it; a failed request is
        counted under ``"error:<reason>"``.
        """
        base = (url or self.frontend).rstrip("/")
        seen: Counter[str] = Counter()
        for _ in range(count):
            try:
                with urllib.request.urlopen(base + path, timeout=timeout) as resp:
                    body = resp.read().decode(errors="replace")
                seen[who_answered(body)] += 1
            except OSError as exc:
                seen[f"error:{exc}"] += 1
        return seen
