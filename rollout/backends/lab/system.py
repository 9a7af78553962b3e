"""Checks of the machine and a small command runner for the lab.

The lab drives real programs (systemd-nspawn, ip, iptables, haproxy, ssh-keygen),
so each check names the Debian package that provides a missing program, and the
runner raises typed errors that carry the command's stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence

from rollout.errors import DriverError, EnvironmentProblem

# The Debian package that installs each program the lab needs.
PACKAGES: Mapping[str, str] = {
    "systemd-nspawn": "systemd-container",
    "haproxy": "haproxy",
    "debootstrap": "debootstrap",
    "ip": "iproute2",
    "iptables": "iptables",
    "ssh-keygen": "openssh-client",
    "ssh": "openssh-client",
    "sshd": "openssh-server",
}

# What `lab up` needs, checked before anything is touched.
LAB_PROGRAMS: tuple[str, ...] = (
    "systemd-nspawn",
    "haproxy",
    "debootstrap",
    "ip",
    "iptables",
    "ssh-keygen",
    "ssh",
)

# Programs in sbin directories are not on a non-root PATH; look there as well.
_EXTRA_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def require_root(action: str) -> None:
    """Raise EnvironmentProblem unless the effective user is root."""
    if os.geteuid() != 0:
        command = action if action.startswith("rollout ") else f"rollout {action}"
        raise EnvironmentProblem(
            f"{action} needs root (it creates network namespaces, a bridge, NAT rules "
            "and systemd-nspawn machines); you are uid "
            f"{os.geteuid()}",
            hint=f"run it again as root, e.g. sudo {command}",
        )


def find_program(program: str) -> str | None:
    """The full path of ``program``, also searching the sbin directories."""
    found = shutil.which(program)
    if found:
        return found
    path = os.pathsep.join(_EXTRA_DIRS)
    return shutil.which(program, path=path)


def missing_programs(programs: Iterable[str]) -> list[str]:
    return [p for p in programs if find_program(p) is None]


def require_programs(programs: Iterable[str] = LAB_PROGRAMS) -> None:
    """Raise EnvironmentProblem naming every missing program and its package."""
    missing = missing_programs(programs)
    if not missing:
        return
    listed = ", ".join(f"{p} (package {PACKAGES.get(p, p)})" for p in missing)
    packages = " ".join(sorted({PACKAGES.get(p, p) for p in missing}))
    raise EnvironmentProblem(
        f"missing program(s): {listed}",
        hint=f"install them with: apt-get install -y {packages}",
    )


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 120.0,
    what: str | None = None,
    umask: int = -1,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` and capture its output as text.

    ``umask`` (when given) is the program's: the CLI runs with 077, but a
    program that builds a root file system for the nodes needs the usual 022.

    A missing program raises EnvironmentProblem; a non-zero exit (with
    ``check``) or a timeout raises DriverError quoting stderr, prefixed by
    ``what`` (what we were doing) when given.
    """
    args = list(cmd)
    label = what or " ".join(args)
    try:
        proc = subprocess.run(
            args,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
            umask=umask,
        )
    except FileNotFoundError:
        package = PACKAGES.get(args[0], args[0])
        raise EnvironmentProblem(
            f"{label}: program {args[0]!r} not found",
            hint=f"install it with: apt-get install -y {package}",
        ) from None
    except subprocess.TimeoutExpired:
        raise DriverError(f"{label}: timed out after {timeout:.0f}s: {' '.join(args)}") from None
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip()
        raise DriverError(f"{label}: exit {proc.returncode}: {' '.join(args)}: {err}")
    return proc
