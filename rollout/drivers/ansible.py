"""A thin wrapper over ansible-runner: run one playbook against hosts reached over SSH.

What it takes care of (docs/PLATFORM.md, "ansible-runner"): a fresh ``private_data_dir`` per run so
no extravars leak into the next one, ``ansible-playbook`` from this interpreter's
environment first on PATH, the inventory built in memory from
:class:`~rollout.model.SshTarget` with host-key checking on, pipelining on, no
process isolation, the project's ansible.cfg in force
(:mod:`rollout.drivers.ansible_config`). Extra vars reach ansible-playbook as
``-e @file``: a 0600 file in the run's 0700 temporary directory, removed
afterwards, so no value is ever on a command line (``/proc/PID/cmdline`` is
readable by every local user). Vault options are passed as paths and ids only.
A run that cannot start (ansible-playbook missing, rc 127) raises
:class:`~rollout.errors.EnvironmentProblem`; a failed play raises
:class:`PlaybookFailed` (a :class:`~rollout.errors.BakeError`) naming the failed
task and the host's output. Ctrl-C cancels the play and kills ansible-playbook
before ``KeyboardInterrupt`` propagates, so nothing keeps running behind us.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout import names
from rollout.drivers.ansible_config import ProjectAnsible
from rollout.errors import BakeError, EnvironmentProblem
from rollout.model import SshTarget, VaultOptions

# Counters of ansible's play recap that we keep, per host.
STAT_KEYS = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")
_FAILED_EVENTS = ("runner_on_failed", "runner_on_unreachable", "runner_on_async_failed")
# How often the runner looks at the cancel flag (ansible-runner's default is 5 s).
_POLL_SECONDS = 0.5
_OUTPUT_LIMIT = 4000


@dataclass(frozen=True)
class TaskFailure:
    """The first task that failed (or host that was unreachable) in a play."""

    task: str
    host: str
    output: str
    unreachable: bool = False


@dataclass(frozen=True)
class PlaybookResult:
    """The outcome of one ``ansible-playbook`` run.

    ``status`` is ansible-runner's: successful, failed, canceled or timeout.
    ``stats`` maps each counter of the play recap (ok, changed, failures, dark…)
    to a mapping of host to count.
    """

    status: str
    rc: int
    stats: dict[str, dict[str, int]]
    duration: float
    log_path: Path | None = None
    failure: TaskFailure | None = None
    tasks: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0

    def describe(self) -> str:
        """One human sentence saying why the run did not succeed."""
        log = f" (log: {self.log_path})" if self.log_path else ""
        if self.failure is not None:
            what = "unreachable" if self.failure.unreachable else "failed"
            out = self.failure.output.strip() or "no output"
            return (
                f"task {self.failure.task!r} {what} on {self.failure.host}: {out}{log}"
            )
        if self.status == "timeout":
            return f"the playbook timed out after {self.duration:.0f}s{log}"
        if self.status == "canceled":
            return f"the playbook was canceled{log}"
        return f"ansible-playbook ended with status {self.status}, rc {self.rc}{log}"


class PlaybookFailed(BakeError):
    """The play did not succeed; ``result`` holds what ansible reported."""

    def __init__(self, message: str, result: PlaybookResult, *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.result = result


def build_inventory(
    hosts: Mapping[str, SshTarget], group: str | None = None,
    member_of: Sequence[str] = (), host_groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """An ansible inventory (as ansible-runner takes it) reaching each host over
    SSH; the hosts are put in ``group`` when one is given, and that group in
    each group of ``member_of`` (so their group_vars apply to the hosts).
    ``host_groups`` adds groups holding some of the hosts each (a hook's
    ``new`` and ``old``), so a play can pick its host by role in the step."""
    entries: dict[str, dict[str, Any]] = {}
    for host_name, target in hosts.items():
        names.name(host_name, "inventory host name")
        entry: dict[str, Any] = {
            "ansible_host": names.address(target.host, f"host {host_name}"),
            "ansible_port": target.port,
            "ansible_user": target.user,
            "ansible_ssh_common_args": shlex.join(target.ssh_options()),
            "ansible_python_interpreter": "/usr/bin/python3",
        }
        if target.key_file:
            entry["ansible_ssh_private_key_file"] = target.key_file
        entries[host_name] = entry
    if group is not None:
        names.name(group, "inventory group name")
        children: dict[str, Any] = {group: {"hosts": entries}}
        for parent in member_of:
            names.name(parent, "inventory group name")
            children[parent] = {"children": {group: {}}}
    else:
        children = {}
    for extra, members in (host_groups or {}).items():
        names.name(extra, "inventory group name")
        children[extra] = {"hosts": {h: {} for h in members if h in entries}}
    if group is not None:
        return {"all": {"children": children}}
    if children:
        return {"all": {"hosts": entries, "children": children}}
    return {"all": {"hosts": entries}}


def runner_env(project: Path, work: Path) -> dict[str, str]:
    """Environment of ansible-playbook: our interpreter's bin first, the project's
    ansible.cfg (or, without one, its roles/ and collections/), pipelining and
    host-key checking on, SSH control sockets in ``work``."""
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    return {
        "PATH": f"{bindir}:{path}",
        **ProjectAnsible(project).env(),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
        # Short-lived masters: the builder is powered off right after the play.
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=10s",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
    }


def write_extravars(private: Path, extravars: Mapping[str, object]) -> Path:
    """Write ``extravars`` where ansible-runner passes them on as ``-e @FILE``:
    ``private/env/extravars``, mode 0600 from its creation, in a 0700 directory."""
    env = private / "env"
    env.mkdir(mode=0o700, exist_ok=True)
    path = env / "extravars"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(dict(extravars), handle)
    return path


def _write_inventory(private: Path, inventory: Mapping[str, Any]) -> Path:
    path = private / "inventory" / "hosts.json"
    path.parent.mkdir(mode=0o700)
    path.write_text(json.dumps(inventory), encoding="utf-8")
    return path


def _host_output(res: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for key in ("msg", "stderr", "module_stderr", "stdout", "module_stdout"):
        value = res.get(key)
        if isinstance(value, str) and value.strip() and value.strip() not in parts:
            parts.append(value.strip())
    text = "\n".join(parts)
    if len(text) > _OUTPUT_LIMIT:
        text = text[:_OUTPUT_LIMIT] + " […]"
    return text


def first_failure(events: Iterable[Mapping[str, Any]]) -> TaskFailure | None:
    """The first failed or unreachable task in ansible-runner events, ignoring
    failures the play chose to ignore."""
    for event in events:
        if event.get("event") not in _FAILED_EVENTS:
            continue
        data = event.get("event_data") or {}
        if data.get("ignore_errors"):
            continue
        res = data.get("res") or {}
        return TaskFailure(
            task=str(data.get("task") or "?"),
            host=str(data.get("host") or "?"),
            output=_host_output(res if isinstance(res, Mapping) else {}),
            unreachable=event.get("event") == "runner_on_unreachable",
        )
    return None


def play_stats(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """The play recap counters from the ``playbook_on_stats`` event ({} if none)."""
    for event in events:
        if event.get("event") != "playbook_on_stats":
            continue
        data = event.get("event_data") or {}
        return {
            key: {str(h): int(n) for h, n in (data.get(key) or {}).items()}
            for key in STAT_KEYS
        }
    return {}


def run_playbook(
    project: Path,
    playbook: str,
    hosts: dict[str, SshTarget],
    extravars: dict[str, object],
    *,
    log_dir: Path,
    cancel: Callable[[], bool] | None = None,
    timeout: float | None = None,
    on_task: Callable[[str], None] | None = None,
    check: bool = True,
    log_name: str | None = None,
    group: str | None = None,
    vault: VaultOptions | None = None,
    inventory: Path | None = None,
    member_of: Sequence[str] = (),
    host_groups: Mapping[str, Sequence[str]] | None = None,
) -> PlaybookResult:
    """Run ``project/playbook`` against ``hosts`` and return what happened.

    ``cancel`` is polled about twice a second; returning True stops the play, as
    does ``timeout`` (the status is then "canceled" or "timeout"). ansible-playbook
    and its workers are killed before this returns, also on Ctrl-C.
    ``on_task`` is called with each task name as it starts; ``group`` puts the
    hosts in an inventory group of that name, itself in the groups ``member_of``;
    ``inventory`` is an inventory source read as well (an environment's
    directory: its group_vars, vault files included, then apply to the hosts
    through ``member_of``); ``host_groups`` are more groups of some of the
    hosts (see :func:`build_inventory`); ``vault`` says where the vault passwords are (as
    ansible-playbook's options). With ``check`` (the
    default) a run that did not succeed raises :class:`PlaybookFailed`.
    The full ansible output is kept in ``log_dir`` (as ``log_name``.log if given).
    """
    import ansible_runner  # slow to import; only bakes need it

    if not (project / playbook).is_file():
        raise BakeError(
            f"{project / playbook}: playbook not found",
            hint="run from the project directory (it holds playbooks/ and roles/)",
        )
    log_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ansible-run-"))
    interrupted = threading.Event()
    events: list[dict[str, Any]] = []
    tasks: list[str] = []

    def handle_event(event: dict[str, Any]) -> bool:
        events.append(event)
        if event.get("event") == "playbook_on_task_start":
            task = str((event.get("event_data") or {}).get("task") or "")
            tasks.append(task)
            if on_task is not None and task:
                on_task(task)
        return True

    started = time.monotonic()
    deadline = started + timeout if timeout else None
    timed_out = threading.Event()
    doomed: list[tuple[int, str]] = []

    def should_cancel() -> bool:
        stop = interrupted.is_set() or (cancel is not None and bool(cancel()))
        if not stop and deadline is not None and time.monotonic() > deadline:
            timed_out.set()
            stop = True
        if stop and not doomed:
            # ansible's workers call setsid(), so the runner's killpg misses them:
            # note the whole tree while it still hangs below us, kill it afterwards.
            doomed.extend(process_tree(os.getpid(), "ansible-playbook"))
        return stop

    try:
        for sub in ("tmp", "cp", "private"):
            (work / sub).mkdir(mode=0o700)
        if extravars:
            write_extravars(work / "private", extravars)
        sources = [str(_write_inventory(work / "private",
                                        build_inventory(hosts, group, member_of,
                                                        host_groups)))]
        if inventory is not None:
            sources.append(str(inventory))
        try:
            thread, runner = ansible_runner.run_async(
                private_data_dir=str(work / "private"),
                project_dir=str(project),
                playbook=playbook,
                inventory=sources,
                cmdline=shlex.join((vault or VaultOptions()).argv()) or None,
                envvars=runner_env(project, work),
                suppress_env_files=True,
                settings={"pexpect_timeout": _POLL_SECONDS},
                quiet=True,
                cancel_callback=should_cancel,
                event_handler=handle_event,
            )
        except SystemExit as exc:  # ansible-runner exits when it cannot set up
            raise EnvironmentProblem(f"ansible-runner could not start: exit {exc.code}") from None
        try:
            while thread.is_alive():
                thread.join(0.2)
        except KeyboardInterrupt:
            # The runner kills ansible-playbook's process group once it sees the flag.
            interrupted.set()
            thread.join(15)
            kill_processes(doomed)
            raise
        kill_processes(doomed)
        duration = time.monotonic() - started
        log_path = _keep_log(runner, log_dir, log_name)
        rc = int(runner.rc) if runner.rc is not None else -1
        if rc == 127:
            raise EnvironmentProblem(
                f"ansible-playbook could not be run (rc 127); see {log_path}",
                hint=f"install ansible-core into {sys.prefix} (pip install ansible-core)",
            )
        result = PlaybookResult(
            status="timeout" if timed_out.is_set() else str(runner.status),
            rc=rc,
            stats=play_stats(events),
            duration=duration,
            log_path=log_path,
            failure=first_failure(events),
            tasks=tuple(tasks),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if check and not result.ok:
        raise PlaybookFailed(f"{playbook}: {result.describe()}", result)
    return result


def process_tree(root: int, name: str) -> list[tuple[int, str]]:
    """(pid, start time) of each child of ``root`` whose command line holds
    ``name``, and of all their descendants."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        starts[int(entry)] = fields[19]
    found: list[tuple[int, str]] = []
    queue = [pid for pid in children.get(root, []) if name in _cmdline(pid)]
    while queue:
        pid = queue.pop()
        found.append((pid, starts[pid]))
        queue.extend(children.get(pid, []))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def kill_processes(processes: Iterable[tuple[int, str]]) -> None:
    """SIGKILL each (pid, start time) that still runs; the start time guards
    against a pid reused by an unrelated process."""
    for pid, start in processes:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            if fields[19] == start:
                os.kill(pid, signal.SIGKILL)
        except (OSError, IndexError):
            continue


def _keep_log(runner: Any, log_dir: Path, log_name: str | None) -> Path | None:
    """Copy ansible's stdout out of the throwaway private_data_dir."""
    try:
        with runner.stdout as handle:
            text = str(handle.read())
    except (OSError, AttributeError, ValueError):
        return None
    if log_name is None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        log_name = f"ansible-{stamp}-{os.getpid()}"
    path = log_dir / f"{names.image_id(log_name, 'log name')}.log"
    path.write_text(text, encoding="utf-8")
    return path
