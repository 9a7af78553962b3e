"""The lab's :class:`rollout.protocols.Builder`: a writable nspawn node whose
directory becomes the image.

How each step of the bake pipeline (:mod:`rollout.bake.pipeline`) runs here::

    check     the parent has a root file system; root; the programs a bake runs
    start     copy the parent rootfs (the parent image, or the base cache) into
              <images>/.build/<image_id>/rootfs     (cp -a --reflink=auto)
              and boot it as a writable lab node ``bake-<8 hex>``; wait for SSH
    capture   power the builder off and remove it; seal the rootfs (machine-id,
              hostname, SSH host keys, journal, apt caches); move it to
              <images>/<image_id>/rootfs
    register  write <images>/<image_id>/manifest.json LAST: the image now counts
    discard   remove the builder node and every directory of an unregistered image
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from rollout.backends.lab import base as lab_base
from rollout.backends.lab import nodes
from rollout.backends.lab.images import ROOTFS, LabImageStore
from rollout.backends.lab.system import require_programs, require_root
from rollout.bake import pipeline
from rollout.bake.request import check_request, smoke_settings
from rollout.clock import SystemClock
from rollout.config import Environment
from rollout.errors import BakeError, DriverError, Interrupted, NotFoundError
from rollout.model import BakeRequest, Image, Node, NodeState, SshTarget, VaultOptions
from rollout.paths import DataDir
from rollout.protocols import Clock

Say = Callable[[str], None]

_SSH_TIMEOUT = 60.0
# Programs a bake runs besides Python.
_PROGRAMS = ("systemd-nspawn", "ip", "iptables", "ssh", "ssh-keygen", "cp")


def _quiet(_message: str) -> None:
    return None


def _never() -> bool:
    return False


class LabBuilder:
    """Bakes one image on the lab of ``env`` into ``data``'s image store."""

    playbook_timeout = 900.0

    def __init__(self, env: Environment, data: DataDir, *, clock: Clock | None = None,
                 on_event: Say = _quiet) -> None:
        self.env = env
        self.data = data
        self.lab = nodes.LabContext(data=data, settings=env.settings.lab)
        self.store = LabImageStore(data)
        self.clock = clock or SystemClock()
        self.name = f"bake-{secrets.token_hex(4)}"
        self._say = on_event
        self._image_id: str | None = None
        self._booted = False
        self._registered = False

    def check(self, request: BakeRequest) -> str:
        parent = request.parent
        if parent is not None and not Path(parent.location, "usr").is_dir():
            raise NotFoundError(
                f"parent image {parent.id}: no root file system at {parent.location}",
                hint="list images with `rollout images`",
            )
        require_root(f"bake --role {request.role}")
        require_programs(_PROGRAMS)
        if parent is None:
            return lab_base.base_key()
        return str(parent.manifest.get("base") or "")

    def _build_dir(self) -> Path:
        assert self._image_id is not None
        return self.data.images / ".build" / self._image_id

    def start(self, request: BakeRequest, cancel: Callable[[], bool]) -> Node:
        self._image_id = request.image_id
        self.data.ensure()
        if request.parent is None:
            source = lab_base.ensure_base(self.data, on_event=self._say)
        else:
            source = Path(request.parent.location)
        build = self._build_dir()
        build.mkdir(parents=True)
        what = "the base" if request.parent is None else request.parent.id
        self._say(f"copying {what} into {build}")
        _copy_tree(source, build / ROOTFS)
        if cancel():
            raise Interrupted(f"builder {self.name}: stopped before it booted")
        self._say(f"booting builder {self.name}")
        self._booted = True  # from here on the node's record may exist
        record = nodes.start_node(
            self.lab, self.name, build / ROOTFS, role=request.role, env=self.env.name,
            image_id=request.image_id, image_version=request.version, writable=True,
            clock=self.clock,
        )
        nodes.wait_ssh(self.lab, self.name, _SSH_TIMEOUT, clock=self.clock, cancel=cancel)
        return Node(
            name=self.name, address=record.address, role=request.role, env=self.env.name,
            image_id=request.image_id, image_version=request.version,
            state=NodeState.RUNNING, created_at=record.created_at,
        )

    def ssh(self, node: Node) -> SshTarget:
        return nodes.ssh_target(self.lab, node.name)

    def capture(self, node: Node, image: Image) -> Image:
        self._say(f"stopping builder {node.name}")
        nodes.stop_node(self.lab, node.name, clock=self.clock)
        nodes.remove_node(self.lab, node.name, clock=self.clock)
        self._booted = False
        build = self._build_dir()
        seal(build / ROOTFS)
        final = self.store.image_dir(image.id)
        final.mkdir(parents=True)
        os.replace(build / ROOTFS, final / ROOTFS)
        build.rmdir()
        return replace(image, location=str(final / ROOTFS))

    def register(self, image: Image) -> Image:
        registered = self.store.register(image.id, image.manifest)
        self._registered = True
        return registered

    def discard(self) -> list[str]:
        problems: list[str] = []
        if self._booted:
            try:
                nodes.remove_node(self.lab, self.name, clock=self.clock)
                self._booted = False
            except (OSError, DriverError) as exc:
                problems.append(f"builder node {self.name} may still run ({exc}): "
                                f"remove it with `rollout lab down` or `rollout reap`")
        if self._image_id is not None and not self._registered:
            for path in (self._build_dir(), self.store.image_dir(self._image_id)):
                shutil.rmtree(path, ignore_errors=True)
                if path.exists():
                    problems.append(f"could not remove {path}")
        return problems


def bake_on_lab(
    project: Path,
    env: Environment,
    data: DataDir,
    role: str,
    version: str,
    *,
    parent: Image | None = None,
    extra_vars: Mapping[str, str] | None = None,
    smoke: bool = True,
    on_event: Say = _quiet,
    cancel: Callable[[], bool] = _never,
    clock: Clock | None = None,
    vault: VaultOptions | None = None,
) -> Image:
    """Bake and register an image of ``role`` at ``version`` on the lab (what
    ``lab up`` does for a role without images, and what tests call)."""
    clock = clock or SystemClock()
    settings = smoke_settings(env, project, role)
    request = check_request(project, role, version, parent=parent, extra_vars=extra_vars,
                            smoke=smoke, bake=settings.bake, vault=vault,
                            inventory=env.path)
    builder = LabBuilder(env, data, clock=clock, on_event=on_event)
    gate = pipeline.testinfra_gate(
        project, settings, builder.ssh,
        data.evidence / request.image_id,
    ) if smoke else None
    return pipeline.bake(builder, request, smoke=gate, log_dir=data.logs, clock=clock,
                         cancel=cancel, on_event=on_event)


def _inside(rootfs: Path, rel: str) -> Path:
    """``rootfs/rel``, refusing a path whose directories leave the rootfs through a
    symlink: a role could plant one, and the seal runs as root on the host."""
    path = rootfs / rel
    parent = path.parent.resolve()
    if parent != rootfs.resolve() and rootfs.resolve() not in parent.parents:
        raise BakeError(f"{path}: its directory leaves the image through a symlink")
    return path


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def seal(rootfs: Path) -> None:
    """Remove what must differ per node or only bloats the image: machine-id
    (emptied, so each boot makes its own), hostname, SSH host keys, the random
    seed, the journal, apt caches, ansible leftovers and temp files."""
    machine_id = _inside(rootfs, "etc/machine-id")
    _remove(machine_id)
    fd = os.open(machine_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
    os.close(fd)
    for rel in ("etc/hostname", "var/lib/dbus/machine-id", "var/lib/systemd/random-seed",
                "root/.ansible", "root/.bash_history"):
        _remove(_inside(rootfs, rel))
    for directory, pattern in (
        ("etc/ssh", "ssh_host_*"),
        ("var/log/journal", "*"),
        ("var/cache/apt", "*.bin"),
        ("var/cache/apt/archives", "*.deb"),
        ("tmp", "*"),
        ("var/tmp", "*"),
    ):
        base = _inside(rootfs, f"{directory}/x").parent
        if base.is_dir():
            for entry in base.glob(pattern):
                _remove(entry)


def _copy_tree(src: Path, dest: Path) -> None:
    proc = subprocess.run(
        ["cp", "-a", "--reflink=auto", str(src), str(dest)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise BakeError(f"could not copy {src} to {dest}: {proc.stderr.strip()}")
