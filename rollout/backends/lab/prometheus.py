"""The lab's Prometheus: Debian's ``prometheus`` scraping the lab HAProxy's
built-in exporter, so analyses query it the way they would in production.

Ports: the HAProxy exporter listens on ``lab.metrics_port`` and Prometheus on
``lab.prometheus_port``; unset, they are the first HAProxy pool's
``frontend_port`` + 1000 and + 2000 (a lab on 18600 gets 19600 and 20600).
Both offsets are multiples of 1000 so that labs on consecutive frontend
ports (the dev, staging and prod environments) never share one.
Files under ``DataDir.lab``: ``prometheus.yml``, ``prometheus.pid``,
``prometheus.log`` and the TSDB in ``prometheus/``. Like HAProxy's, the pid is
trusted only when ``/proc/PID/cmdline`` is prometheus with *our* config file.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rollout.backends.lab.processes import proc_argv
from rollout.clock import SystemClock
from rollout.config import Environment
from rollout.errors import DriverError
from rollout.fsio import write_atomic
from rollout.paths import DataDir
from rollout.protocols import Clock

PROGRAM = "prometheus"
SCRAPE_INTERVAL = "1s"


@dataclass(frozen=True)
class LabMetricsPorts:
    exporter: int
    prometheus: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus}"


def lab_metrics_ports(env: Environment) -> LabMetricsPorts | None:
    """The exporter's and Prometheus' ports, or None when no pool uses HAProxy."""
    lab = env.settings.lab
    ports = sorted(p.settings.haproxy.frontend_port for p in env.pools.values()
                   if p.settings.haproxy is not None)
    if not ports:
        return None
    return LabMetricsPorts(lab.metrics_port or ports[0] + 1000,
                           lab.prometheus_port or ports[0] + 2000)


@dataclass(frozen=True)
class PrometheusFiles:
    config: Path
    pidfile: Path
    log: Path
    tsdb: Path

    @classmethod
    def of(cls, data: DataDir) -> PrometheusFiles:
        lab = data.lab
        return cls(lab / "prometheus.yml", lab / "prometheus.pid", lab / "prometheus.log",
                   lab / "prometheus")


def render_config(ports: LabMetricsPorts) -> str:
    """A scrape config for the lab HAProxy's exporter, scraped every second."""
    return (
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL}\n"
        f"  evaluation_interval: {SCRAPE_INTERVAL}\n"
        "scrape_configs:\n"
        "  - job_name: haproxy\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{ports.exporter}']\n"
    )


def _ours(pid: int, config: Path) -> bool:
    argv = proc_argv(pid)
    return (bool(argv) and os.path.basename(argv[0]) == PROGRAM
            and f"--config.file={config}" in argv)


def prometheus_pid(data: DataDir) -> int | None:
    """Our Prometheus' pid, verified, or None."""
    files = PrometheusFiles.of(data)
    try:
        text = files.pidfile.read_text().strip()
    except FileNotFoundError:
        return None
    pid = int(text) if text.isdigit() else 0
    return pid if pid and _ours(pid, files.config) else None


def ensure_prometheus(data: DataDir, ports: LabMetricsPorts, *, clock: Clock | None = None,
                      timeout: float = 30.0) -> str:
    """Run the lab's Prometheus; "started" or "unchanged" (a changed config
    is reloaded with SIGHUP: "reloaded")."""
    clock = clock or SystemClock()
    files = PrometheusFiles.of(data)
    files.config.parent.mkdir(parents=True, exist_ok=True)
    text = render_config(ports)
    pid = prometheus_pid(data)
    current = files.config.read_text() if files.config.exists() else None
    if pid is not None:
        if current == text:
            return "unchanged"
        write_atomic(files.config, text)
        os.kill(pid, signal.SIGHUP)
        return "reloaded"
    write_atomic(files.config, text)
    files.tsdb.mkdir(parents=True, exist_ok=True)
    with open(files.log, "ab") as log:
        # Its own session: a Ctrl-C at the `lab up` terminal must not stop it.
        proc = subprocess.Popen(
            [PROGRAM, f"--config.file={files.config}", f"--storage.tsdb.path={files.tsdb}",
             f"--web.listen-address=127.0.0.1:{ports.prometheus}",
             "--storage.tsdb.retention.time=1d"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    write_atomic(files.pidfile, f"{proc.pid}\n")
    deadline = clock.now() + timeout
    while clock.now() < deadline:
        if proc.poll() is not None:
            raise DriverError(f"prometheus exited with {proc.returncode} at start",
                              hint=f"see {files.log}")
        # The standard library's client: requests costs every command's startup.
        try:
            with urllib.request.urlopen(f"{ports.url}/-/ready", timeout=1):
                return "started"  # 2xx (urlopen raises HTTPError on 4xx/5xx)
        except (OSError, http.client.HTTPException):
            pass
        clock.sleep(0.2)
    raise DriverError(f"prometheus did not answer on {ports.url} within {timeout:.0f}s",
                      hint=f"see {files.log}")


def stop_prometheus(data: DataDir, *, timeout: float = 10.0, clock: Clock | None = None) -> None:
    """Stop our Prometheus (by its verified pid) and remove its files."""
    clock = clock or SystemClock()
    files = PrometheusFiles.of(data)
    pid = prometheus_pid(data)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = clock.now() + timeout
        while _ours(pid, files.config) and clock.now() < deadline:
            clock.sleep(0.1)
        if _ours(pid, files.config):
            os.kill(pid, signal.SIGKILL)
        # Started by this process (a test's in-process lab): reap it.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    for path in (files.pidfile, files.config):
        path.unlink(missing_ok=True)


__all__ = ["LabMetricsPorts", "ensure_prometheus", "lab_metrics_ports", "prometheus_pid",
           "render_config", "stop_prometheus"]
