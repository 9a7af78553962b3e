"""The smoke gate: HTTP checks and the role's testinfra suite, run against ONE node.

:class:`TestinfraSmokeRunner` implements :class:`rollout.protocols.SmokeRunner`.
It first runs the pool's HTTP checks (``rollout.smoke.http_checks``) against
``http://ADDRESS:service_port/PATH``, then the testinfra suite
(``rollout.smoke.suite``) in a subprocess of its own: pytest caches modules and
hosts when run in-process, and a subprocess gives a JUnit file per node and can
be killed as a group when it overruns the timeout. The suite reaches the node
over SSH through a generated ssh_config (testinfra ignores ``--ssh-extra-args``)
with a ControlMaster, which makes the suite's commands cheap.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

from rollout import names
from rollout.config import HttpCheck, Pool, PoolSettings
from rollout.drivers.probe import ProbeError, http_get
from rollout.errors import ConfigError
from rollout.model import Image, Node, SmokeResult, SshTarget

_HTTP_TIMEOUT = 5.0
_OUTPUT_TAIL = 2000


def http_check(address: str, port: int, check: HttpCheck, timeout: float) -> str | None:
    """Run one HTTP check within ``timeout`` seconds in all; None when it
    passes, else what went wrong."""
    where = f"GET {check.path}"
    try:
        answer = http_get(address, port, check.path, timeout, user_agent="rollout-smoke")
    except ProbeError as exc:
        return f"{where}: no answer from {address}:{port}: {exc}"
    if answer.status != check.status:
        return f"{where}: expected status {check.status}, got {answer.status}"
    if check.contains is not None and check.contains not in answer.body:
        return f"{where}: the body does not contain {check.contains!r}"
    return None


def ssh_config_text(alias: str, target: SshTarget, control_dir: Path) -> str:
    """An ssh_config block for ``alias`` carrying the target's options, with a
    ControlMaster so every command of the suite reuses one connection. The
    ControlPath avoids ``%C``, which testinfra cannot handle.

    ssh_config is line-based, so no value may hold a newline (it would add a
    directive such as ProxyCommand): :class:`SshTarget` checks its fields, the
    alias and control directory are checked here, and paths are quoted."""
    names.address(alias, "ssh_config: Host")
    control = names.ssh_path(str(control_dir), "control directory", "ssh_config")
    lines = [
        f"Host {alias}",
        f"  HostName {target.host}",
        f"  User {names.ssh_user(target.user, 'ssh_config')}",
        f"  Port {int(target.port)}",
    ]
    options = target.ssh_options()
    i = 0
    while i < len(options):
        flag = options[i]
        value = options[i + 1] if i + 1 < len(options) else ""
        if flag == "-o" and "=" in value:
            key, _, val = value.partition("=")
            lines.append(f"  {key} {val}")
        elif flag == "-i":
            lines.append(f"  IdentityFile {names.ssh_quote(value)}")
        i += 2
    control_path = f"{control}/cm-%r@%h:%p"
    if any(c.isspace() for c in control_path):
        control_path = f'"{control_path}"'
    lines += [
        "  ControlMaster auto",
        "  ControlPersist 30s",
        f"  ControlPath {control_path}",
    ]
    return "\n".join(lines) + "\n"


def junit_failures(path: Path) -> list[tuple[str, str]]:
    """(test name, first line of its message) for each failed or errored test
    in a JUnit XML file. The testinfra host parameter is dropped from names."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return []
    found: list[tuple[str, str]] = []
    for case in root.iter("testcase"):
        for child in case:
            if child.tag in ("failure", "error"):
                name = case.get("name", "?").split("[", 1)[0]
                message = (child.get("message") or child.text or "").strip()
                found.append((name, message.splitlines()[0] if message else ""))
                break
    return found


def junit_counts(path: Path) -> tuple[int, int]:
    """(tests, failed or errored) from a JUnit XML file; (0, 0) if unreadable."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return 0, 0
    cases = list(root.iter("testcase"))
    bad = sum(1 for case in cases if any(c.tag in ("failure", "error") for c in case))
    return len(cases), bad


class TestinfraSmokeRunner:
    """Smoke-gates one node: the pool's HTTP checks, then its testinfra suite.

    ``ssh_for`` says how to reach a node; ``evidence_dir`` receives
    ``<node>.xml`` (JUnit) and ``<node>.log`` (pytest output); ``timeout``
    bounds one whole run (all attempts)."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        project: Path,
        pool_settings: PoolSettings,
        ssh_for: Callable[[Node], SshTarget],
        evidence_dir: Path,
        timeout: float,
    ) -> None:
        self.project = project
        self.settings = pool_settings
        self.ssh_for = ssh_for
        self.evidence_dir = evidence_dir
        self.timeout = timeout
        self.suite: Path | None = None
        if pool_settings.smoke.suite is not None:
            suite = (project / pool_settings.smoke.suite).resolve()
            if not suite.is_dir():
                raise ConfigError(
                    f"rollout.smoke.suite: {suite} is not a directory",
                    hint="point it at the role's testinfra suite, e.g. smoke/web",
                )
            self.suite = suite

    @classmethod
    def for_pool(cls, project: Path, pool: Pool, ssh_for: Callable[[Node], SshTarget],
                 evidence_dir: Path) -> TestinfraSmokeRunner:
        """The smoke gate of ``pool``, bounded by its ``timeouts.smoke``."""
        return cls(project=project, pool_settings=pool.settings, ssh_for=ssh_for,
                   evidence_dir=evidence_dir, timeout=pool.settings.timeouts.smoke)

    def run(self, node: Node, image: Image) -> SmokeResult:
        """Run the checks (with ``smoke.retries`` extra attempts on failure)."""
        started = time.monotonic()
        deadline = started + self.timeout
        attempts = 1 + self.settings.smoke.retries
        result = self._attempt(node, image, deadline, started)
        for _ in range(attempts - 1):
            if result.passed or time.monotonic() >= deadline:
                break
            result = self._attempt(node, image, deadline, started)
        return result

    def _attempt(self, node: Node, image: Image, deadline: float, started: float) -> SmokeResult:
        http_failures = self._http(node, deadline)
        if self.suite is None:
            return self._result(started, http_failures, [], None, "")
        suite_failures, junit, note = self._suite(node, image, deadline)
        return self._result(started, http_failures, suite_failures, junit, note)

    def _http(self, node: Node, deadline: float) -> list[tuple[str, str]]:
        address = names.address(node.address, f"node {node.name}")
        failures: list[tuple[str, str]] = []
        for check in self.settings.smoke.http_checks:
            left = deadline - time.monotonic()
            if left <= 0:
                failures.append((f"http {check.path}", "the smoke timeout ran out"))
                break
            problem = http_check(
                address, self.settings.service_port, check, min(_HTTP_TIMEOUT, left)
            )
            if problem is not None:
                failures.append((f"http {check.path}", problem))
        return failures

    def _suite(
        self, node: Node, image: Image, deadline: float
    ) -> tuple[list[tuple[str, str]], str | None, str]:
        assert self.suite is not None
        node_name = names.name(node.name, "node name")
        target = self.ssh_for(node)
        address = names.address(target.host, f"node {node_name}")
        self.evidence_dir.mkdir(parents=True, exist_ok=True)
        junit = self.evidence_dir / f"{node_name}.xml"
        log = self.evidence_dir / f"{node_name}.log"
        junit.unlink(missing_ok=True)
        # A short directory: unix socket paths are limited to 108 bytes.
        control_dir = Path(tempfile.mkdtemp(prefix="rsmk-"))
        config = control_dir / "ssh_config"
        config.write_text(ssh_config_text(address, target, control_dir), encoding="utf-8")
        host = f"[{address}]" if ":" in address else address
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            str(self.suite),
            f"--hosts=ssh://{target.user}@{host}",
            f"--ssh-config={config}",
            f"--junitxml={junit}",
            "-p",
            "no:cacheprovider",
            "-q",
            "--no-header",
        ]
        env = {
            **os.environ,
            "ROLLOUT_EXPECT_VERSION": image.version,
            "ROLLOUT_IMAGE_ID": image.id,
            "ROLLOUT_NODE": node_name,
            "ROLLOUT_SERVICE_PORT": str(self.settings.service_port),
        }
        try:
            output, rc = _run_bounded(cmd, env, self.project, deadline - time.monotonic())
        finally:
            _close_master(config, address)
            shutil.rmtree(control_dir, ignore_errors=True)
        log.write_text(output, encoding="utf-8")
        if rc is None:
            return (
                [("suite", f"timed out after {self.timeout:.0f}s (output: {log})")],
                (str(junit) if junit.exists() else None),
                "timeout",
            )
        failures = junit_failures(junit)
        if rc != 0 and not failures:
            tail = output.strip()[-_OUTPUT_TAIL:]
            what = "collected no tests" if rc == 5 else f"exited with {rc}"
            failures = [("suite", f"pytest {what}: {tail} (output: {log})")]
        return failures, str(junit) if junit.exists() else None, ""

    def _result(
        self,
        started: float,
        http_failures: Sequence[tuple[str, str]],
        suite_failures: Sequence[tuple[str, str]],
        junit: str | None,
        note: str,
    ) -> SmokeResult:
        failures = [*http_failures, *suite_failures]
        checks = len(self.settings.smoke.http_checks)
        tests = junit_counts(Path(junit))[0] if junit else 0
        total = checks + tests
        if failures:
            detail = "; ".join(f"{name}: {msg}" if msg else name for name, msg in failures)
            summary = f"{len(failures)} of {max(total, len(failures))} checks failed: {detail}"
        else:
            summary = f"{total} checks passed ({checks} HTTP, {tests} suite)"
        if note:
            summary += f" [{note}]"
        return SmokeResult(
            passed=not failures,
            duration=time.monotonic() - started,
            summary=summary,
            junit_path=junit,
            failures=tuple(name for name, _ in failures),
        )


def _run_bounded(
    cmd: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> tuple[str, int | None]:
    """Run ``cmd`` in its own process group; (output, rc), rc None on timeout.
    The group is killed on timeout and on KeyboardInterrupt."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=max(timeout, 0.1))
        return output, proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        output, _ = proc.communicate()
        return output, None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _close_master(config: Path, alias: str) -> None:
    """Stop the suite's SSH ControlMaster now rather than after ControlPersist."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            ["ssh", "-F", str(config), "-O", "exit", alias],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=5,
            check=False,
        )
