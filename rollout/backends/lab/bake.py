"""Baking an image: Ansible applied to a booted, writable builder node, then sealed.

Steps, in order (everything is validated before the first side effect)::

    validate role, version, extra vars, playbook, root and programs
    copy the parent rootfs (the parent image, or the base cache) into
        <images>/.build/<image_id>/rootfs           (cp -a --reflink=auto)
    boot it as a writable lab node ``bake-<8 hex>``, wait for SSH
    run playbooks/bake.yml (roles/base, then roles/<role>) via ansible-runner
    smoke-gate the builder (HTTP checks + testinfra suite), unless smoke=False
    power the builder off and remove it
    seal the rootfs (machine-id, hostname, SSH host keys, journal, apt caches)
    move the rootfs to <images>/<image_id>/rootfs
    write <images>/<image_id>/manifest.json LAST: the image is now registered

On any failure or Ctrl-C the builder node and the build directory are removed
and nothing is registered.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rollout import names
from rollout.backends.lab.images import (
    ROOTFS,
    LabImageStore,
    iso_utc,
    new_image_id,
    role_checksum,
    roles_commit,
)
from rollout.config import Environment, PoolSettings
from rollout.drivers.ansible import PlaybookFailed, run_playbook
from rollout.drivers.smoke import TestinfraSmokeRunner
from rollout.errors import BakeError, ConfigError, DriverError, Interrupted, NotFoundError
from rollout.model import Image, Node, NodeState, SmokeResult, SshTarget
from rollout.paths import DataDir

PLAYBOOK = "playbooks/bake.yml"
# Extra vars the bake sets itself; a user may not override them.
RESERVED_VARS = ("rollout_role", "rollout_image_version", "rollout_image_id")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SSH_TIMEOUT = 60.0
_PLAYBOOK_TIMEOUT = 900.0
# Programs a bake runs besides Python.
_PROGRAMS = ("systemd-nspawn", "ip", "iptables", "ssh", "ssh-keygen", "cp")


def known_roles(project: Path) -> list[str]:
    """Roles that can be baked: directories under roles/ except the shared base."""
    roles = project / "roles"
    if not roles.is_dir():
        return []
    return sorted(
        p.name for p in roles.iterdir()
        if p.is_dir() and p.name != "base" and not p.name.startswith(".")
    )


def check_request(
    project: Path, role: str, version: str, extra_vars: Mapping[str, str]
) -> dict[str, str]:
    """Validate a bake request without touching anything; returns the extra vars."""
    names.name(role, "role", "--role")
    if role not in known_roles(project):
        known = ", ".join(known_roles(project)) or "none"
        raise NotFoundError(
            f"unknown role {role!r} (roles: {known})",
            hint=f"pass one of the roles under {project / 'roles'}",
        )
    names.version(version, "--version")
    if not (project / PLAYBOOK).is_file():
        raise ConfigError(
            f"{project / PLAYBOOK}: playbook not found",
            hint="run from the project directory (it holds playbooks/ and roles/)",
        )
    checked: dict[str, str] = {}
    for key, value in extra_vars.items():
        if not isinstance(key, str) or not _VAR_NAME.fullmatch(key):
            raise ConfigError(
                f"--extra-var: {key!r} is not a valid variable name: use letters, digits "
                "and '_', starting with a letter or '_'"
            )
        if key in RESERVED_VARS:
            raise ConfigError(
                f"--extra-var: {key} is set by the bake itself",
                hint="use --role and --version instead",
            )
        if not isinstance(value, str) or "\0" in value:
            raise ConfigError(f"--extra-var: the value of {key} must be text")
        checked[key] = value
    return checked


def smoke_settings(env: Environment, project: Path, role: str) -> PoolSettings:
    """The pool's settings when the environment has a pool for ``role``; else
    defaults whose suite is smoke/<role> when that directory exists. Only the
    smoke settings and the service port are used by a bake."""
    pool = env.pools.get(role)
    if pool is not None:
        return pool.settings
    suite = f"smoke/{role}" if (project / "smoke" / role).is_dir() else None
    # The load balancer section is required by the model but unused here.
    return PoolSettings.model_validate(
        {"haproxy": {"backend": role, "frontend_port": 80}, "smoke": {"suite": suite}}
    )


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


def bake(
    project: Path,
    env: Environment,
    data: DataDir,
    role: str,
    version: str,
    *,
    parent: Image | None = None,
    extra_vars: Mapping[str, str] | None = None,
    smoke: bool = True,
    on_event: Callable[[str], None] | None = None,
) -> Image:
    """Bake and register an image of ``role`` at ``version``; see the module doc.

    Raises NotFoundError/ConfigError before any side effect for a bad request,
    EnvironmentProblem when not root or a program is missing, BakeError when
    Ansible or the smoke gate fails, Interrupted on Ctrl-C. In every failure
    case no image is registered and no builder is left.
    """
    # Imported here: the lab modules are only needed once a bake really starts.
    from rollout.backends.lab import base as lab_base
    from rollout.backends.lab import nodes
    from rollout.backends.lab.system import require_programs, require_root

    say = on_event or (lambda _message: None)
    user_vars = check_request(project, role, version, extra_vars or {})
    if parent is not None and not Path(parent.location, "usr").is_dir():
        raise NotFoundError(
            f"parent image {parent.id}: no root file system at {parent.location}",
            hint="list images with `rollout images`",
        )
    settings = smoke_settings(env, project, role) if smoke else None
    require_root(f"bake --role {role}")
    require_programs(_PROGRAMS)

    store = LabImageStore(data)
    image_id = new_image_id(role, version)
    builder = f"bake-{secrets.token_hex(4)}"
    lab = nodes.LabContext(data=data, settings=env.settings.lab)
    build_dir = data.images / ".build" / image_id
    final_dir = store.image_dir(image_id)
    started_at = time.time()
    started = time.monotonic()
    builder_started = False
    registered = False
    try:
        data.ensure()
        if parent is None:
            source = lab_base.ensure_base(data, on_event=say)
            base_id = lab_base.base_key()
        else:
            source = Path(parent.location)
            base_id = str(parent.manifest.get("base") or "")
        build_dir.mkdir(parents=True)
        say(f"copying {'the base' if parent is None else parent.id} into {build_dir}")
        _copy_tree(source, build_dir / ROOTFS)

        say(f"booting builder {builder}")
        builder_started = True
        record = nodes.start_node(
            lab, builder, build_dir / ROOTFS, role=role, env=env.name, image_id=image_id,
            image_version=version, writable=True,
        )
        nodes.wait_ssh(lab, builder, _SSH_TIMEOUT)
        target = nodes.ssh_target(lab, builder)

        extravars: dict[str, object] = {
            **user_vars,
            "rollout_role": role,
            "rollout_image_version": version,
            "rollout_image_id": image_id,
        }
        say(f"running {PLAYBOOK} (roles base, {role})")
        try:
            result = run_playbook(
                project, PLAYBOOK, {builder: target}, extravars, group="builder",
                log_dir=data.logs,
                timeout=_PLAYBOOK_TIMEOUT, on_task=lambda task: say(f"task: {task}"),
                log_name=f"bake-{image_id}",
            )
        except PlaybookFailed as exc:
            raise BakeError(
                f"bake of {role} {version} failed: {exc.result.describe()}",
                hint="fix the role (or the extra vars) and bake again; nothing was registered",
            ) from None

        smoke_record: dict[str, Any] = {"skipped": True}
        if settings is not None:
            say(f"smoke-testing builder {builder}")
            node = Node(
                name=builder, address=record.address, role=role, env=env.name,
                image_id=image_id, image_version=version, state=NodeState.RUNNING,
                created_at=started_at,
            )
            outcome = _smoke(project, settings, data, node, target)
            smoke_record = {
                "passed": outcome.passed, "summary": outcome.summary,
                "junit": outcome.junit_path, "duration": round(outcome.duration, 3),
            }
            if not outcome.passed:
                raise BakeError(
                    f"bake of {role} {version}: the smoke gate failed on builder {builder}: "
                    f"{outcome.summary}",
                    hint=f"see {outcome.junit_path or data.evidence}; nothing was registered",
                )

        say(f"stopping builder {builder}")
        nodes.stop_node(lab, builder)
        nodes.remove_node(lab, builder)
        builder_started = False
        seal(build_dir / ROOTFS)
        final_dir.mkdir(parents=True)
        os.replace(build_dir / ROOTFS, final_dir / ROOTFS)
        build_dir.rmdir()
        commit, dirty = roles_commit(project)
        manifest: dict[str, Any] = {
            "id": image_id,
            "role": role,
            "version": version,
            "parent": parent.id if parent is not None else None,
            "base": base_id,
            "role_checksum": role_checksum(project, role),
            "roles_commit": commit,
            "roles_dirty": dirty,
            "created_at": iso_utc(started_at),
            "created_at_epoch": started_at,
            "bake_seconds": round(time.monotonic() - started, 3),
            "builder": builder,
            "ansible": {"stats": result.stats, "log": str(result.log_path or "")},
            "smoke": smoke_record,
            "verified": settings is not None,
            "extra_vars": user_vars,
        }
        image = store.register(image_id, manifest)
        registered = True
        say(f"registered image {image_id} in {time.monotonic() - started:.1f}s")
        return image
    except KeyboardInterrupt:
        raise Interrupted(
            f"bake of {role} {version} interrupted; builder {builder} removed, "
            "nothing registered"
        ) from None
    except DriverError as exc:
        raise BakeError(f"bake of {role} {version} failed: {exc}", hint=exc.hint) from exc
    finally:
        if not registered:
            _cleanup(lab, builder if builder_started else None, build_dir, final_dir, say)


def _smoke(
    project: Path, settings: PoolSettings, data: DataDir, builder: Node, target: SshTarget
) -> SmokeResult:
    """The pool's smoke gate against the builder, evidence under evidence/<image id>."""
    runner = TestinfraSmokeRunner(
        project, settings, lambda _node: target, data.evidence / builder.image_id,
        settings.timeouts.smoke,
    )
    image = Image(id=builder.image_id, role=builder.role, version=builder.image_version,
                  created_at=builder.created_at)
    return runner.run(builder, image)


def _cleanup(
    lab: Any, builder: str | None, build_dir: Path, final_dir: Path,
    say: Callable[[str], None],
) -> None:
    """Remove the builder and every directory of an unregistered image. A second
    Ctrl-C during cleanup is deferred until the cleanup is done; a step that
    fails is reported through ``say`` (the bake is already failing)."""
    from rollout.backends.lab import nodes

    pending: BaseException | None = None
    steps: list[Callable[[], None]] = []
    if builder is not None:
        steps.append(lambda: nodes.remove_node(lab, builder))
    steps.append(lambda: shutil.rmtree(build_dir, ignore_errors=True))
    steps.append(lambda: shutil.rmtree(final_dir, ignore_errors=True))
    for step in steps:
        while True:
            try:
                step()
                break
            except KeyboardInterrupt as exc:
                pending = exc  # finish cleaning first, then stop
            except (OSError, DriverError) as exc:
                say(f"cleanup after the failed bake: {exc}")
                break
    if pending is not None:
        raise pending
