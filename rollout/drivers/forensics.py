"""Forensics: what a sick node looked like, fetched over SSH before it is replaced.

``rollout replace NODE`` calls :func:`collect_forensics` first. It runs a few
read-only commands on the node with fabric and writes each output to
``<data>/evidence/forensics/<node>-<UTC time>/NAME.txt`` plus a
``summary.json``. The node is sick by assumption, so one command failing,
timing out or missing (a minimal image may have no ``journalctl``) is itself a
finding: it is recorded and collection goes on. Even a failed connection is
recorded, not raised; only bad arguments raise ConfigError.

Host keys follow ``SshTarget.host_key_policy``:

==========  ===========================================================
verify      load ``known_hosts`` (else the user's) and reject unknown keys
accept-new  add unknown keys to ``known_hosts``; reject changed keys
ignore      accept any key (for throwaway test machines only)
==========  ===========================================================

A target with a ``host_key_alias`` (an AWS instance id) is checked against the
known_hosts entries of that name only, as ssh's ``HostKeyAlias`` does: an entry
for its address, left by an earlier instance, is not consulted.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rollout import names
from rollout.errors import ConfigError
from rollout.fsio import write_atomic
from rollout.model import SshTarget
from rollout.paths import DataDir

COMMANDS: tuple[tuple[str, str], ...] = (
    ("failed-units", "systemctl --failed --no-legend --plain"),
    ("journal", "journalctl -n 200 --no-pager"),
    ("disk", "df -h"),
    ("memory", "free -m"),
    ("system-state", "systemctl is-system-running"),
)
MAX_OUTPUT = 1_000_000  # characters kept per stream, so a runaway log cannot fill the disk


@dataclass(frozen=True)
class CommandRecord:
    """One command's outcome. ``status``: ok (exit 0), failed (non-zero exit),
    timeout, error (the SSH channel failed) or skipped (no connection)."""

    name: str
    command: str
    status: str
    exit_code: int | None
    duration: float
    error: str = ""
    file: str = ""


@dataclass(frozen=True)
class ForensicsReport:
    node: str
    directory: Path
    connected: bool
    error: str
    commands: tuple[CommandRecord, ...]
    failed_units: tuple[str, ...] = ()
    system_state: str = ""

    @property
    def complete(self) -> bool:
        """True when every command ran to an exit code (zero or not)."""
        return self.connected and all(c.exit_code is not None for c in self.commands)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "forensics_collected",
            "node": self.node,
            "directory": str(self.directory),
            "connected": self.connected,
            "error": self.error,
            "failed_units": list(self.failed_units),
            "system_state": self.system_state,
            "commands": [asdict(c) for c in self.commands],
        }


def _connection(target: SshTarget, connect_timeout: float) -> Any:
    # Imported here: fabric pulls in paramiko and cryptography, which only the
    # commands that reach nodes need.
    from fabric import Config, Connection
    from paramiko import AutoAddPolicy, RejectPolicy, SSHConfig

    if target.host_key_policy not in ("verify", "accept-new", "ignore"):
        raise ConfigError(
            f"ssh: host_key_policy {target.host_key_policy!r} of {target.host} is not one of "
            "verify, accept-new, ignore"
        )
    own_key = target.key_file is not None
    conn = Connection(
        host=target.host,
        user=target.user,
        port=target.port,
        # An explicit, empty ssh_config: never read ~/.ssh/config, whose
        # settings would make the lab's behaviour depend on who runs it.
        config=Config(ssh_config=SSHConfig()),
        connect_timeout=max(1, math.ceil(connect_timeout)),
        connect_kwargs={
            # fabric merges key_filename as a list: leave it out rather than None.
            **({"key_filename": [target.key_file]} if own_key else {}),
            "look_for_keys": not own_key,
            "allow_agent": not own_key,
            "banner_timeout": connect_timeout,
            "auth_timeout": connect_timeout,
        },
    )
    client = conn.client
    if target.host_key_policy == "ignore":
        client.set_missing_host_key_policy(AutoAddPolicy())
        return conn
    if target.host_key_alias:
        # No keys loaded into the client: every key reaches the policy, which
        # looks it up under the alias alone.
        client.set_missing_host_key_policy(aliased_host_keys(
            target.known_hosts, target.host_key_alias,
            accept_new=target.host_key_policy == "accept-new",
        ))
        return conn
    if target.known_hosts:
        # load_host_keys also makes AutoAddPolicy save new keys to this file,
        # which is exactly accept-new.
        client.load_host_keys(target.known_hosts)
    else:
        client.load_system_host_keys()
    policy = RejectPolicy() if target.host_key_policy == "verify" else AutoAddPolicy()
    client.set_missing_host_key_policy(policy)
    return conn


def aliased_host_keys(known_hosts: str | None, alias: str, *, accept_new: bool) -> Any:
    """A paramiko host-key policy that checks the server's key against the
    ``alias`` entries of ``known_hosts`` (else ``~/.ssh/known_hosts``): a match
    connects, a different key of that type is refused as changed, and an
    unknown one is refused, or with ``accept_new`` added under the alias."""
    from paramiko import BadHostKeyException, HostKeys, MissingHostKeyPolicy, SSHException

    path = Path(known_hosts or Path.home() / ".ssh" / "known_hosts")

    class AliasedHostKeys(MissingHostKeyPolicy):  # type: ignore[misc]
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            keys = HostKeys(str(path)) if path.is_file() else HostKeys()
            known = keys.lookup(alias) or {}
            expected = known.get(key.get_name())
            if expected is not None:
                if expected == key:
                    return
                raise BadHostKeyException(hostname, key, expected)
            if not accept_new:
                raise SSHException(f"Server {alias!r} ({hostname}) not found in known_hosts")
            with path.open("a", encoding="utf-8") as handle:
                handle.write(f"{alias} {key.get_name()} {key.get_base64()}\n")

    return AliasedHostKeys()


def _describe_connect_error(exc: BaseException, target: SshTarget) -> str:
    from paramiko import AuthenticationException, BadHostKeyException

    where = f"{target.user}@{target.host}:{target.port}"
    if isinstance(exc, BadHostKeyException):
        return (f"{where}: the host key CHANGED (possible impostor); not connecting. "
                f"Check {target.known_hosts or '~/.ssh/known_hosts'}")
    if isinstance(exc, AuthenticationException):
        return f"{where}: authentication failed with key {target.key_file or '(default keys)'}"
    text = str(exc) or type(exc).__name__
    if "not found in known_hosts" in text:
        return (f"{where}: unknown host key (policy verify); add it to "
                f"{target.known_hosts or '~/.ssh/known_hosts'}")
    return f"{where}: cannot connect: {type(exc).__name__}: {text}"


def _new_dir(base: Path, node: str, now: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    base.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = base / (f"{node}-{stamp}" if n == 1 else f"{node}-{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"{base}: too many forensics directories for {node} at {stamp}")


def _failed_units(stdout: str) -> tuple[str, ...]:
    units = []
    for line in stdout.splitlines():
        fields = line.replace("●", " ").split()
        if fields:
            units.append(fields[0])
    return tuple(units)


def collect_forensics(
    node: str,
    target: SshTarget,
    data: DataDir,
    *,
    now: float,
    command_timeout: float = 20.0,
    connect_timeout: float = 10.0,
    commands: Sequence[tuple[str, str]] = COMMANDS,
    timer: Callable[[], float] = time.monotonic,
) -> ForensicsReport:
    """Run ``commands`` on ``node`` over SSH and keep their output as evidence.

    ``now`` (Unix time) names the directory; ``timer`` measures durations.
    Never raises for what happens on the node or the network: every failure
    is in the returned report and in ``summary.json``.
    """
    names.name(node, "node")
    for name, _ in commands:
        names.name(name, "forensics command name")
    if command_timeout <= 0 or connect_timeout <= 0:
        raise ConfigError("forensics: timeouts must be more than zero")
    directory = _new_dir(data.evidence / "forensics", node, now)
    conn = _connection(target, connect_timeout)
    records: list[CommandRecord] = []
    outputs: dict[str, str] = {}
    connected, error = False, ""
    try:
        try:
            conn.open()
            connected = True
        # A node under forensics is sick by assumption: every way the
        # connection fails is a finding to record, not a crash.
        except Exception as exc:
            error = _describe_connect_error(exc, target)
        for name, command in commands:
            if not connected:
                records.append(CommandRecord(name, command, "skipped", None, 0.0, error))
                continue
            record, stdout = _run(conn, name, command, command_timeout, directory, timer)
            records.append(record)
            outputs[name] = stdout
    finally:
        conn.close()

    report = ForensicsReport(
        node=node,
        directory=directory,
        connected=connected,
        error=error,
        commands=tuple(records),
        failed_units=_failed_units(outputs.get("failed-units", "")),
        system_state=outputs.get("system-state", "").strip(),
    )
    summary = report.to_json()
    summary.update(host=target.host, port=target.port, user=target.user, collected_at=now)
    write_atomic(directory / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return report


def _run(conn: Any, name: str, command: str, timeout: float, directory: Path,
         timer: Callable[[], float]) -> tuple[CommandRecord, str]:
    from invoke.exceptions import CommandTimedOut

    started = timer()
    stdout = stderr = ""
    exit_code: int | None = None
    detail = ""
    try:
        result = conn.run(command, hide=True, warn=True, timeout=timeout, in_stream=False,
                          pty=False)
        stdout, stderr, exit_code = result.stdout, result.stderr, result.exited
        status = "ok" if exit_code == 0 else "failed"
        if exit_code != 0 and timer() - started >= timeout:
            # invoke's timer can kill the channel before it marks the run as timed
            # out; the command then looks like a failure, but our timeout ended it.
            status, detail, exit_code = "timeout", f"no answer within {timeout:g}s", None
        elif exit_code != 0:
            detail = (stderr.strip().splitlines() or [f"exit code {exit_code}"])[0]
    except CommandTimedOut as exc:
        status, detail = "timeout", f"no answer within {timeout:g}s"
        stdout, stderr = exc.result.stdout, exc.result.stderr
    # Recorded, as for the connection: a channel dying mid-command is a finding.
    except Exception as exc:
        status, detail = "error", f"{type(exc).__name__}: {exc}"
    duration = round(timer() - started, 3)
    text = stdout[:MAX_OUTPUT]
    if stderr:
        text += "\n--- stderr ---\n" + stderr[:MAX_OUTPUT]
    path = directory / f"{name}.txt"
    write_atomic(path, text)
    record = CommandRecord(name, command, status, exit_code, duration, detail, path.name)
    return record, stdout
