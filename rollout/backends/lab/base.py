"""The lab's base image: a debootstrapped Debian, built once and cached.

Layout under ``DataDir.base_cache``::

    bookworm-<hash>/rootfs   the customised root file system
    bookworm-<hash>/stamp    written last: a base without it is never used

``<hash>`` covers the suite, package list and customisation, so changing any of
them builds a new base next to the old one. A build happens in a temp directory
that is renamed into place, under a lock, so a crash or a second ``lab up`` never
sees a half-built base.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from rollout.backends.lab.system import require_programs, run
from rollout.errors import EnvironmentProblem
from rollout.paths import DataDir

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2",
    "nginx-light", "curl", "ca-certificates",
)
# Bump when customise() changes, so caches built by older code are not reused.
CUSTOMISATION = 1

# Host keys and root's authorized key come from the per-node bind mount.
SSHD_DROPIN = """\
# Written by rollout: keys come from the node's own read-only bind mount.
HostKey /etc/ssh/node/ssh_host_ed25519_key
AuthorizedKeysFile /etc/ssh/node/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
"""

# Units that fail or make no sense inside an nspawn container on this host.
MASKED_UNITS: tuple[str, ...] = ()


def base_key() -> str:
    text = json.dumps([SUITE, MIRROR, sorted(PACKAGES), CUSTOMISATION])
    return f"{SUITE}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def base_rootfs(data: DataDir) -> Path:
    return data.base_cache / base_key() / "rootfs"


def debootstrap_command(target: Path) -> list[str]:
    """The debootstrap command line that builds the base into ``target``.

    ``--force-check-gpg``: without it, a missing archive keyring only warns, and
    debootstrap goes on to install packages it has not authenticated (our mirror
    is plain HTTP). With it, that is an error, before anything is downloaded.
    """
    return [
        "debootstrap", "--variant=minbase", "--force-check-gpg",
        f"--include={','.join(PACKAGES)}", SUITE, str(target), MIRROR,
    ]


def base_ready(data: DataDir) -> bool:
    return (data.base_cache / base_key() / "stamp").is_file()


def _system_dir(path: Path) -> None:
    """A directory of the image that every user may read (0755 whatever the umask)."""
    if not path.is_dir():
        path.mkdir(parents=True)
        os.chmod(path, 0o755)


def customise(rootfs: Path) -> None:
    """Seal a debootstrapped tree into a base every node can share."""
    etc = rootfs / "etc"
    if not (etc / "os-release").exists() and not (rootfs / "usr/lib/os-release").exists():
        raise EnvironmentProblem(f"{rootfs}: not a Debian root file system")
    # Modes are explicit below: the CLI's umask (077) must not leak into the image.
    # An empty machine-id gives each boot its own id without a first-boot preset.
    (etc / "machine-id").write_text("")
    os.chmod(etc / "machine-id", 0o644)
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (etc / "hostname").unlink(missing_ok=True)
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    (etc / "ssh/node").mkdir(mode=0o700, exist_ok=True)
    dropin = etc / "ssh/sshd_config.d/rollout-lab.conf"
    _system_dir(dropin.parent)
    dropin.write_text(SSHD_DROPIN)
    os.chmod(dropin, 0o644)
    wants = etc / "systemd/system/multi-user.target.wants"
    _system_dir(wants)
    ssh_link = wants / "ssh.service"
    if not ssh_link.is_symlink():
        ssh_link.symlink_to("/lib/systemd/system/ssh.service")
    # The web role enables nginx; the bare base serves nothing.
    (wants / "nginx.service").unlink(missing_ok=True)
    for unit in MASKED_UNITS:
        mask = etc / "systemd/system" / unit
        mask.unlink(missing_ok=True)
        mask.symlink_to("/dev/null")
    # A trimmed apt cache keeps images small; bakes run apt-get update anyway.
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def ensure_base(data: DataDir, *, on_event: Callable[[str], None] = lambda _m: None) -> Path:
    """The cached base root file system, building it first if needed (~60 s)."""
    rootfs = base_rootfs(data)
    if base_ready(data):
        return rootfs
    require_programs(["debootstrap"])
    data.base_cache.mkdir(parents=True, exist_ok=True)
    fd = os.open(data.base_cache / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if base_ready(data):  # built by someone else while we waited
            return rootfs
        _build(data, on_event)
    finally:
        os.close(fd)
    return rootfs


def _build(data: DataDir, on_event: Callable[[str], None]) -> None:
    final = data.base_cache / base_key()
    tmp = data.base_cache / f".build-{base_key()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    on_event(f"building the base image {base_key()} with debootstrap (about a minute)")
    started = time.monotonic()
    try:
        # umask 022: the tree is every node's root file system, which the
        # nodes' unprivileged services must read (the CLI itself runs at 077).
        run(debootstrap_command(tmp / "rootfs"), timeout=1200, umask=0o022,
            what=f"debootstrap of the base image into {tmp}")
        customise(tmp / "rootfs")
        (tmp / "stamp").write_text(json.dumps({
            "suite": SUITE, "packages": list(PACKAGES), "customisation": CUSTOMISATION,
            "built_at": time.time(), "seconds": round(time.monotonic() - started, 1),
        }) + "\n")
        if final.exists():  # a half-built leftover without a stamp
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    on_event(f"base image ready in {time.monotonic() - started:.0f}s")
