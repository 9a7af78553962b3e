"""Lab nodes: systemd-nspawn machines booting real systemd, one netns each.

Lifecycle of a node (``start_node`` / ``stop_node`` / ``remove_node``)::

    (none) --start_node--> running --stop_node--> stopped --start_node/restart_node--> running
       ^                                             |
       +---------------------remove_node-------------+   (also from running)

A node is started from an image directory with ``--volatile=overlay``, so the
image is never written (an immutable server); a builder (``writable=True``)
boots the directory itself. Each node gets its own SSH host key, a
known_hosts file holding it, and the lab's client key as root's authorized
key, all bind-mounted read-only at ``/etc/ssh/node``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rollout import names
from rollout.backends.lab import network
from rollout.backends.lab.processes import (
    MARKER,
    is_our_nspawn,
    kill_node,
    node_inits,
    node_running,
    signal_node,
    wait_gone,
)
from rollout.backends.lab.records import (
    LabContext,
    NodeRecord,
    lab_lock,
    read_record,
    read_records,
    write_record,
)
from rollout.backends.lab.system import run
from rollout.backends.lab.volumes import (
    allocate_volume,
    volume_holder,
    volume_slot_dir,
    wait_volume_free,
)
from rollout.clock import SystemClock
from rollout.errors import DriverError, Interrupted, NotFoundError
from rollout.model import SshTarget
from rollout.protocols import Clock

__all__ = [
    "LabContext",
    "NodeRecord",
    "list_nodes",
    "node_running",
    "nspawn_command",
    "remove_node",
    "restart_node",
    "signal_node",
    "ssh_run",
    "ssh_target",
    "start_node",
    "stop_node",
    "volume_holder",
    "volume_slot_dir",
    "wait_ssh",
]

# How long nspawn may take to put the container's init into the netns.
_SPAWN_TIMEOUT = 15.0
# How long a SIGKILLed node may take to be gone (measured: well under 1 s).
_KILL_TIMEOUT = 10.0


def _kill_leftovers(lab: LabContext, name: str, pid: int | None, clock: Clock) -> None:
    """Kill whatever still runs of node ``name`` (an orphaned container init
    whose nspawn died, or an nspawn that ignored its poweroff); bounded."""
    if not kill_node(lab, name, pid, _KILL_TIMEOUT, clock):
        left = node_inits(lab, name)
        raise DriverError(
            f"node {name}: its processes survived SIGKILL for {_KILL_TIMEOUT:.0f}s "
            f"(container init pids {left}, nspawn pid {pid})",
            hint="look at those pids with ps; run `rollout lab down` again once they are gone",
        )


def nspawn_command(lab: LabContext, rec: NodeRecord) -> list[str]:
    """The systemd-nspawn command line for ``rec`` (why these flags: docs/PLATFORM.md)."""
    cmd = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-b"]
    if not rec.writable:
        cmd.append("--volatile=overlay")
    cmd += [
        "-D", rec.image_dir,
        "-M", rec.name,
        f"--network-namespace-path={network.netns_path(rec.name)}",
        "--resolv-conf=copy-host",
        f"--bind-ro={lab.node_dir(rec.name) / 'ssh'}:/etc/ssh/node",
        # Marks the container init as this node's, so it can be found and
        # killed even after nspawn itself died (rollout.backends.lab.processes).
        f"--setenv={MARKER}={lab.node_dir(rec.name)}",
    ]
    if rec.volume_dir and rec.volume_path:
        cmd.append(f"--bind={rec.volume_dir}:{rec.volume_path}")
    return cmd


def list_nodes(lab: LabContext) -> list[NodeRecord]:
    """Every recorded node (running or not), oldest first."""
    return read_records(lab)


def _ensure_client_key(lab: LabContext) -> Path:
    """The lab's client key pair, made once. Parallel launches (threads of one
    run, or several runs) race to make it: under the lab lock, the first makes
    it and the others find it; the .pub is in place before the key, so a key
    that exists always has its own .pub."""
    key = lab.client_key
    if key.exists():
        return key
    with lab_lock(lab):
        if key.exists():  # made by another launch while we waited
            return key
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = key.with_name(f".tmp-{os.getpid()}")
        for leftover in (tmp, tmp.with_suffix(".pub")):
            leftover.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rollout-lab", "-f", str(tmp)],
            what="create the lab's SSH client key")
        os.replace(tmp.with_suffix(".pub"), key.with_suffix(".pub"))
        os.replace(tmp, key)
    return key


def _ensure_node_keys(lab: LabContext, name: str, address: str) -> None:
    ssh_dir = lab.node_dir(name) / "ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    host_key = ssh_dir / "ssh_host_ed25519_key"
    if not host_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(host_key)],
            what=f"create the SSH host key of node {name}")
    client_pub = _ensure_client_key(lab).with_suffix(".pub")
    shutil.copyfile(client_pub, ssh_dir / "authorized_keys")
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    pub = host_key.with_suffix(".pub").read_text().split()
    (lab.node_dir(name) / "known_hosts").write_text(f"{address} {pub[0]} {pub[1]}\n")


def _spawn(lab: LabContext, rec: NodeRecord) -> int:
    """Start nspawn detached (its own session, reparented away from us); its pid."""
    log = Path(rec.console_log)
    log.parent.mkdir(parents=True, exist_ok=True)
    # The console log is ours (private). nspawn gets the usual umask 022, not
    # the CLI's 077: a node must not depend on our umask (nspawn 252 resets it
    # for the container anyway, measured; this keeps it so on other versions).
    os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    # The shell backgrounds nspawn and exits, so nspawn outlives this process
    # and never becomes our zombie; `echo $!` hands back its pid.
    script = 'log="$1"; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'
    cmd = ["sh", "-c", script, "sh", str(log), *nspawn_command(lab, rec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, start_new_session=True,
                          check=False, timeout=30, umask=0o022)
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise DriverError(f"node {rec.name}: could not start systemd-nspawn: {proc.stderr}")
    return int(proc.stdout.strip())


def _log_tail(rec: NodeRecord, lines: int = 15) -> str:
    try:
        text = Path(rec.console_log).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_spawned(rec: NodeRecord, clock: Clock) -> None:
    """Poll until the container's init runs in the node's netns, or nspawn died."""
    assert rec.pid is not None
    deadline = clock.now() + _SPAWN_TIMEOUT
    while True:
        if not is_our_nspawn(rec.pid, rec.name):
            raise DriverError(
                f"node {rec.name}: systemd-nspawn exited at start; console log "
                f"{rec.console_log}:\n{_log_tail(rec)}",
                hint=f"check the image directory {rec.image_dir}",
            )
        pids = run(["ip", "netns", "pids", rec.name], check=False).stdout.split()
        if pids:
            return
        if clock.now() > deadline:
            raise DriverError(f"node {rec.name}: no process in its netns after "
                              f"{_SPAWN_TIMEOUT:.0f}s; console log {rec.console_log}")
        clock.sleep(0.05)


def start_node(
    lab: LabContext,
    name: str,
    image_dir: Path,
    *,
    role: str,
    env: str,
    image_id: str,
    image_version: str,
    rollout_id: str | None = None,
    writable: bool = False,
    clock: Clock | None = None,
    volume_path: str | None = None,
    volume_dir: Path | None = None,
) -> NodeRecord:
    """Boot node ``name`` from ``image_dir`` and return its record at once.

    ``volume_path`` bind-mounts a data volume read-write at that path inside
    the node: ``volume_dir`` (handed over from a stopped node), else the pool's
    lowest free slot under the data directory's ``volumes/``. A restarted node
    keeps the volume its record names.

    The node boots in the background; use :func:`wait_ssh` (or a provider's
    readiness probe) to wait for it. ``writable=True`` boots the directory
    itself (a builder); otherwise an overlay keeps the image untouched.
    Idempotent: a running node of that name is returned as it is; a stopped
    one is started again with its address and keys.
    """
    clock = clock or SystemClock()
    names.name(name, "node name")
    names.name(role, "role")
    names.name(env, "environment")
    names.image_id(image_id)
    names.version(image_version)
    image = Path(image_dir).resolve()
    if not (image / "usr").is_dir() or not (image / "etc").is_dir():
        raise NotFoundError(f"node {name}: image directory {image} holds no root file system",
                            hint="bake the image first, or check the image registry")
    lab.data.ensure()
    with lab_lock(lab):
        network.ensure_network(lab.settings)
        existing = read_record(lab, name)
        if existing is not None and node_running(lab, existing):
            return existing
        if existing is not None:
            address = existing.address
            vol_dir, vol_path = existing.volume_dir, existing.volume_path
        else:
            used = [r.address for r in read_records(lab)]
            address = network.allocate_address(lab.settings.subnet, used)
            vol_dir, vol_path = None, volume_path
            if volume_path is not None:
                vol_dir = str(volume_dir or allocate_volume(lab, env, role))
        rec = NodeRecord(
            name=name, address=address, role=role, env=env, image_id=image_id,
            image_version=image_version, rollout_id=rollout_id,
            created_at=existing.created_at if existing else clock.now(),
            pid=None, writable=writable, image_dir=str(image),
            console_log=str(lab.node_dir(name) / "console.log"),
            volume_dir=vol_dir, volume_path=vol_path,
        )
        # Recorded before anything starts: the address (and volume) are
        # reserved from here on.
        write_record(lab, rec)
    # A node whose nspawn died may have left its init running in the netns
    # (an orphan still holding the address and the volume): end it first.
    _kill_leftovers(lab, name, None, clock)
    wait_volume_free(lab, rec, clock)
    _ensure_node_keys(lab, name, address)
    network.ensure_node_link(lab.settings, name, address)
    rec = replace(rec, pid=_spawn(lab, rec), started_at=clock.now())
    write_record(lab, rec)
    _wait_spawned(rec, clock)
    return rec


def restart_node(lab: LabContext, name: str, *, clock: Clock | None = None) -> NodeRecord:
    """Start a stopped node again from its record (same address, image, keys)."""
    rec = read_record(lab, name)
    if rec is None:
        raise NotFoundError(f"node {name}: no such lab node ({lab.nodes_dir})")
    return start_node(
        lab, name, Path(rec.image_dir), role=rec.role, env=rec.env, image_id=rec.image_id,
        image_version=rec.image_version, rollout_id=rec.rollout_id, writable=rec.writable,
        clock=clock,
    )


def stop_node(
    lab: LabContext, name: str, *, timeout: float = 15.0, clock: Clock | None = None
) -> None:
    """Power the node off cleanly and wait; the record stays (restorable).

    SIGTERM makes nspawn ask the container's systemd to power off; after
    ``timeout`` seconds the node is killed as a unit. A node whose nspawn had
    already died (its init orphaned) is killed at once. Returns only when no
    process of the node is left.
    """
    clock = clock or SystemClock()
    rec = read_record(lab, name)
    if rec is None:
        raise NotFoundError(f"node {name}: no such lab node ({lab.nodes_dir})")
    stopping = rec.pid is not None and signal_node(rec)
    if stopping and rec.pid is not None:
        wait_gone(rec.pid, name, timeout, clock)
    _kill_leftovers(lab, name, rec.pid, clock)
    write_record(lab, replace(rec, pid=None))


def remove_node(lab: LabContext, name: str, *, clock: Clock | None = None) -> None:
    """Stop the node if it runs, delete its netns, veth, keys and record. Idempotent."""
    names.name(name, "node name")
    # Another process may finish the same removal meanwhile: a record or
    # directory that vanished under us is already removed.
    with contextlib.suppress(NotFoundError):
        stop_node(lab, name, clock=clock)
    _kill_leftovers(lab, name, None, clock or SystemClock())  # an orphan without a record
    network.remove_node_link(lab.settings, name)
    node_dir = lab.node_dir(name)
    # Rename first so a half-deleted directory never looks like a node.
    doomed = node_dir.with_name(f".removing-{name}-{os.getpid()}")
    try:
        os.replace(node_dir, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def ssh_target(lab: LabContext, name: str) -> SshTarget:
    """Root over SSH with the lab key, verifying the node's own host key."""
    rec = read_record(lab, name)
    if rec is None:
        raise NotFoundError(f"node {name}: no such lab node ({lab.nodes_dir})")
    return SshTarget(
        host=rec.address, user="root", port=22, key_file=str(lab.client_key),
        known_hosts=str(lab.node_dir(name) / "known_hosts"), host_key_policy="verify",
    )


def ssh_run(
    target: SshTarget, command: str, *, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` on the node once over ssh; never raises on a non-zero exit."""
    cmd = ["ssh", *target.ssh_options(), "-p", str(target.port),
           f"{target.user}@{target.host}", command]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 255, "", f"ssh timed out after {timeout}s")


def wait_ssh(lab: LabContext, name: str, timeout: float, *, clock: Clock | None = None,
             cancel: Callable[[], bool] | None = None) -> None:
    """Poll until root can run a command on the node over SSH (for builders);
    Interrupted as soon as ``cancel`` returns True."""
    clock = clock or SystemClock()
    target = ssh_target(lab, name)
    deadline = clock.now() + timeout
    last = ""
    while True:
        if cancel is not None and cancel():
            raise Interrupted(f"node {name}: stopped waiting for SSH (a stop was requested)")
        rec = read_record(lab, name)
        if rec is None or not node_running(lab, rec):
            raise DriverError(f"node {name}: its systemd-nspawn is not running",
                              hint=f"see its console log {lab.node_dir(name) / 'console.log'}")
        proc = ssh_run(target, "true", timeout=max(1.0, min(10.0, deadline - clock.now())))
        if proc.returncode == 0:
            return
        last = proc.stderr.strip()
        if clock.now() > deadline:
            raise DriverError(
                f"node {name}: no SSH at {target.host} after {timeout:.0f}s: {last}",
                hint=f"see its console log {rec.console_log}",
            )
        clock.sleep(0.2)


