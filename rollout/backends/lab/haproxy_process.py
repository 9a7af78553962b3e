"""The lab's HAProxy process: start, seamless reload, stop.

Files under ``DataDir.lab``: ``haproxy.cfg`` (rendered by
``rollout.drivers.haproxy.config``), ``haproxy.pid``, ``haproxy.sock`` (the admin
runtime API, which also hands listening sockets to a reloaded process) and
``haproxy.state`` (server states saved before a reload, so the new process
keeps each slot's address and admin state).

A pid from the pid file is trusted only after checking that ``/proc/PID/cmdline``
is haproxy running *our* config: other labs run HAProxy on this host too.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from rollout.backends.lab.system import run
from rollout.clock import SystemClock
from rollout.drivers.haproxy.config import restore_down_servers, save_server_state
from rollout.drivers.haproxy.runtime import HAProxyRuntime
from rollout.errors import DriverError
from rollout.fsio import write_atomic
from rollout.paths import DataDir
from rollout.protocols import Clock


@dataclass(frozen=True)
class HAProxyFiles:
    config: Path
    pidfile: Path
    socket: Path
    state: Path

    @classmethod
    def of(cls, data: DataDir) -> HAProxyFiles:
        lab = data.lab
        return cls(lab / "haproxy.cfg", lab / "haproxy.pid", lab / "haproxy.sock",
                   lab / "haproxy.state")


def _our_haproxy(pid: int, config: Path) -> bool:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rpartition(")")[2].split()[:1] == ["Z"]:
        return False
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    return bool(argv) and os.path.basename(argv[0]).startswith("haproxy") and str(config) in argv


def haproxy_pids(data: DataDir) -> list[int]:
    """Pids from our pid file that are verified to be haproxy with our config."""
    files = HAProxyFiles.of(data)
    try:
        text = files.pidfile.read_text()
    except FileNotFoundError:
        return []
    pids = [int(tok) for tok in text.split() if tok.isdigit()]
    return [p for p in pids if _our_haproxy(p, files.config)]


def _scan(config: Path) -> list[int]:
    """Every haproxy running our config, including old ones still finishing
    sessions after a reload (they are no longer in the pid file)."""
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and _our_haproxy(int(p.name), config)]


def haproxy_running(data: DataDir) -> bool:
    return bool(haproxy_pids(data))


def runtime(data: DataDir, timeout: float = 5.0) -> HAProxyRuntime:
    """A runtime API client for the lab's HAProxy socket."""
    return HAProxyRuntime.from_url(f"unix://{HAProxyFiles.of(data).socket}", timeout=timeout)


def _wait_socket(data: DataDir, old: set[int], clock: Clock, timeout: float) -> None:
    """Poll until a new haproxy answers on the socket (and is in the pid file)."""
    files = HAProxyFiles.of(data)
    deadline = clock.now() + timeout
    last = ""
    while clock.now() < deadline:
        pids = set(haproxy_pids(data))
        if pids - old:
            try:
                runtime(data, timeout=1.0).show_info()
                return
            except DriverError as exc:
                last = str(exc)
        clock.sleep(0.05)
    raise DriverError(f"HAProxy ({files.config}) did not answer on {files.socket} within "
                      f"{timeout:.0f}s {last}".rstrip())


def ensure_haproxy(data: DataDir, config_text: str, *, clock: Clock | None = None) -> str:
    """Run HAProxy with ``config_text``: start it, reload it if the config
    changed, or leave it alone. Returns "started", "reloaded" or "unchanged"."""
    clock = clock or SystemClock()
    files = HAProxyFiles.of(data)
    files.config.parent.mkdir(parents=True, exist_ok=True)
    running = haproxy_pids(data)
    try:
        current = files.config.read_text()
    except FileNotFoundError:
        current = None
    if running and current == config_text:
        return "unchanged"
    # Check the new text before it replaces the file the running process uses.
    candidate = files.config.with_name(".haproxy.cfg.new")
    candidate.write_text(config_text)
    proc = run(["haproxy", "-c", "-q", "-f", str(candidate)], check=False)
    candidate.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise DriverError(
            f"{files.config}: HAProxy rejects the rendered config: "
            f"{(proc.stderr or proc.stdout).strip()}",
            hint="this is a bug in the config renderer; the running HAProxy was left as is",
        )
    if running:
        save_server_state(runtime(data), files.state)
    write_atomic(files.config, config_text)
    cmd = ["haproxy", "-D", "-f", str(files.config), "-p", str(files.pidfile)]
    if running:
        cmd += ["-x", str(files.socket), "-sf", *map(str, running)]
    else:
        files.socket.unlink(missing_ok=True)
        # A state file left by a HAProxy that died (SIGKILL, OOM) dates from
        # its last reload: loaded now, it would fill slots with addresses that
        # may since belong to other nodes. A fresh start begins empty; the
        # rollout's journal (resume) or `lab up` puts the nodes back.
        files.state.unlink(missing_ok=True)
    run(cmd, what=f"{'reload' if running else 'start'} HAProxy with {files.config}")
    _wait_socket(data, set(running), clock, timeout=10.0)
    if running:
        # A server that was DOWN comes back "UP 1/2" after a reload and would take
        # traffic until `fall` checks fail: mark those down again at once.
        restore_down_servers(runtime(data), files.state)
    return "reloaded" if running else "started"


def stop_haproxy(data: DataDir, *, timeout: float = 10.0, clock: Clock | None = None) -> None:
    """Stop our HAProxy (verified by pid and config path) and remove its files."""
    clock = clock or SystemClock()
    files = HAProxyFiles.of(data)
    pids = sorted(set(haproxy_pids(data)) | set(_scan(files.config)))
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = clock.now() + timeout
    while (alive := [p for p in pids if _our_haproxy(p, files.config)]) and clock.now() < deadline:
        clock.sleep(0.05)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    for path in (files.pidfile, files.socket, files.state, files.config):
        path.unlink(missing_ok=True)
