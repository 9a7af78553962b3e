"""Install the project's ``requirements.yml`` with ansible-galaxy, before a bake.

The file is Ansible's own format: a list of roles, or a mapping with ``roles``
and ``collections``. Roles go to the first entry of the roles path, and
collections to the first entry of the collections path (the project's
ansible.cfg, else the project's ``roles/`` and ``collections/``: see
:mod:`rollout.drivers.ansible_config`), where the bake's ansible-playbook finds
them. ansible-galaxy runs from the project directory, so relative paths in the
file are relative to the project.

Offline (no Galaxy server reachable), every entry names a local source::

    roles:
      - name: acme.motd                 # installed as roles/acme.motd
        src: vendor/acme.motd.tar.gz    # a tarball of the role (or file:///...)
    collections:
      - name: vendor/acme-util-1.0.0.tar.gz   # `ansible-galaxy collection build`
        type: file

Online, the usual ``name: geerlingguy.ntp`` / ``version:`` entries work as
they do for ansible-galaxy. What is already installed is kept (ansible-galaxy
skips it), so a second bake does not reinstall.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rollout.drivers.ansible_config import ProjectAnsible
from rollout.errors import BakeError, ConfigError, EnvironmentProblem
from rollout.yamlcheck import check_text, read_text

REQUIREMENTS = "requirements.yml"
_TIMEOUT = 600.0
_TAIL = 2000


def requirements_file(project: Path) -> Path | None:
    path = project / REQUIREMENTS
    return path if path.is_file() else None


def _sections(path: Path) -> tuple[bool, bool]:
    """Whether the file lists roles, and whether it lists collections."""
    data = check_text(read_text(path), str(path), mapping=False)
    if data is None:
        return False, False
    if isinstance(data, list):
        return bool(data), False
    if not isinstance(data, dict) or set(data) - {"roles", "collections"}:
        raise ConfigError(f"{path}: expected a list of roles, or a mapping with the keys "
                          "'roles' and 'collections'")
    return bool(data.get("roles")), bool(data.get("collections"))


def _galaxy(project: Path, argv: list[str], log: Path) -> None:
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    env = {**os.environ, **ProjectAnsible(project).env(), "ANSIBLE_NOCOLOR": "True"}
    try:
        proc = subprocess.run([str(galaxy), *argv], cwd=project, env=env, text=True,
                              capture_output=True, timeout=_TIMEOUT, check=False)
    except FileNotFoundError:
        raise EnvironmentProblem(f"{galaxy}: ansible-galaxy not found",
                                 hint=f"install ansible-core into {sys.prefix}") from None
    except subprocess.TimeoutExpired:
        raise BakeError(f"{project / REQUIREMENTS}: ansible-galaxy {' '.join(argv[:2])} "
                        f"did not finish within {_TIMEOUT:.0f}s",
                        hint="Galaxy may be unreachable: point each entry at a local "
                        "tarball or directory (see the README)") from None
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ ansible-galaxy {' '.join(argv)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-_TAIL:]
        raise BakeError(
            f"{project / REQUIREMENTS}: ansible-galaxy {' '.join(argv[:2])} failed "
            f"(rc {proc.returncode}): {tail}",
            hint="without Galaxy, point each entry at a local tarball or directory "
            "(README, 'Roles and collections from requirements.yml'); full output in "
            f"{log}")


def install_requirements(project: Path, log_dir: Path) -> list[str]:
    """Install what ``requirements.yml`` lists (nothing when there is none);
    returns the ansible-galaxy commands run. BakeError naming the file when
    ansible-galaxy fails; its output is appended to ``log_dir``/galaxy.log."""
    path = requirements_file(project)
    if path is None:
        return []
    roles, collections = _sections(path)
    settings = ProjectAnsible(project)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "galaxy.log"
    ran: list[str] = []
    if roles:
        argv = ["role", "install", "-r", str(path), "-p", str(settings.roles_dir)]
        _galaxy(project, argv, log)
        ran.append("ansible-galaxy " + " ".join(argv))
    if collections:
        argv = ["collection", "install", "-r", str(path), "-p", str(settings.collections_dir)]
        _galaxy(project, argv, log)
        ran.append("ansible-galaxy " + " ".join(argv))
    return ran

