"""Pure parts of the ansible-runner wrapper: inventory, environment, result parsing."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from rollout.drivers.ansible import (
    PlaybookResult,
    TaskFailure,
    build_inventory,
    first_failure,
    play_stats,
    runner_env,
)
from rollout.errors import ConfigError
from rollout.model import SshTarget

TARGET = SshTarget(
    host="10.232.0.7", key_file="/lab/ssh/id_ed25519", known_hosts="/lab/nodes/b/known_hosts"
)


def test_inventory_reaches_the_host_with_host_key_checking_on() -> None:
    inventory = build_inventory({"bake-1a2b3c4d": TARGET})
    host = inventory["all"]["hosts"]["bake-1a2b3c4d"]
    assert host["ansible_host"] == "10.232.0.7"
    assert host["ansible_user"] == "root"
    assert host["ansible_port"] == 22
    assert host["ansible_ssh_private_key_file"] == "/lab/ssh/id_ed25519"
    assert host["ansible_python_interpreter"] == "/usr/bin/python3"
    args = shlex.split(host["ansible_ssh_common_args"])
    assert "StrictHostKeyChecking=yes" in args
    assert "UserKnownHostsFile=/lab/nodes/b/known_hosts" in args
    assert "UserKnownHostsFile=/dev/null" not in args


def test_inventory_group() -> None:
    inventory = build_inventory({"bake-1": TARGET}, group="builder")
    assert inventory == {
        "all": {"children": {"builder": {"hosts": {"bake-1": build_inventory(
            {"bake-1": TARGET})["all"]["hosts"]["bake-1"]}}}}
    }


@pytest.mark.parametrize(
    ("name", "host"),
    [("bad name", TARGET.host), ("ok", "10.0.0.1; rm -rf /")],
)
def test_inventory_refuses_names_that_reach_a_shell(name: str, host: str) -> None:
    # SshTarget itself refuses a bad host, so it is built inside the check.
    with pytest.raises(ConfigError):
        build_inventory({name: SshTarget(host=host)})


def test_runner_env_puts_this_interpreter_first(tmp_path: Path) -> None:
    env = runner_env(Path("/project"), tmp_path)
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert env["ANSIBLE_ROLES_PATH"] == "/project/roles"
    assert env["ANSIBLE_PIPELINING"] == "True"
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert env["ANSIBLE_SSH_CONTROL_PATH_DIR"].startswith(str(tmp_path))


def _event(kind: str, **data: Any) -> dict[str, Any]:
    return {"event": kind, "event_data": data}


EVENTS = [
    _event("playbook_on_task_start", task="Configure nginx"),
    _event("runner_on_ok", task="Configure nginx", host="b", res={"changed": True}),
    _event("runner_on_failed", task="Probe", host="b", ignore_errors=True,
           res={"msg": "ignored", "rc": 1}),
    _event("runner_on_failed", task="Check the nginx configuration", host="b",
           res={"msg": "non-zero return code", "rc": 1, "stdout": "",
                "stderr": "nginx: [emerg] unknown directive \"lsten\""}),
    _event("runner_on_failed", task="Later", host="b", res={"msg": "second"}),
    _event("playbook_on_stats", ok={"b": 5}, changed={"b": 2}, failures={"b": 1},
           dark={}, skipped={"b": 1}, processed={"b": 1}),
]


def test_first_failure_names_the_task_and_the_host_output() -> None:
    failure = first_failure(EVENTS)
    assert failure == TaskFailure(
        task="Check the nginx configuration", host="b",
        output='non-zero return code\nnginx: [emerg] unknown directive "lsten"',
    )


def test_unreachable_host_is_a_failure() -> None:
    failure = first_failure([_event(
        "runner_on_unreachable", task="Gathering", host="b",
        res={"msg": "Failed to connect to the host via ssh: Host key verification failed."},
    )])
    assert failure is not None and failure.unreachable
    assert "Host key verification failed" in failure.output


def test_no_failure_in_a_clean_play() -> None:
    assert first_failure(EVENTS[:3]) is None


def test_play_stats() -> None:
    stats = play_stats(EVENTS)
    assert stats["ok"] == {"b": 5}
    assert stats["failures"] == {"b": 1}
    assert stats["dark"] == {}
    assert "processed" not in stats
    assert play_stats(EVENTS[:2]) == {}


def test_describe_says_why() -> None:
    failed = PlaybookResult(
        status="failed", rc=2, stats={}, duration=3.0, log_path=Path("/logs/x.log"),
        failure=first_failure(EVENTS),
    )
    text = failed.describe()
    assert "'Check the nginx configuration' failed on b" in text
    assert "unknown directive" in text and "/logs/x.log" in text
    assert not failed.ok
    timeout = PlaybookResult(status="timeout", rc=254, stats={}, duration=60.0)
    assert "timed out after 60s" in timeout.describe()
    assert PlaybookResult(status="successful", rc=0, stats={}, duration=1.0).ok


def test_long_output_is_cut() -> None:
    failure = first_failure([_event("runner_on_failed", task="t", host="h",
                                    res={"stderr": "x" * 10000})])
    assert failure is not None and len(failure.output) < 4100


def test_process_tree_reaches_detached_workers(tmp_path: Path) -> None:
    """ansible's workers call setsid(); the tree walk must still find and kill them."""
    import os
    import subprocess
    import time

    from rollout.drivers.ansible import kill_processes, process_tree

    pidfile = tmp_path / "worker.pid"
    script = (
        "import os, subprocess, time;"
        "w = subprocess.Popen(['sleep', '60'], start_new_session=True);"
        f"open({str(pidfile)!r}, 'w').write(str(w.pid)); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, "fake-ansible-playbook"])
    try:
        deadline = time.monotonic() + 10
        while not pidfile.exists() or not pidfile.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        worker = int(pidfile.read_text())
        tree = process_tree(os.getpid(), "fake-ansible-playbook")
        assert {pid for pid, _ in tree} == {parent.pid, worker}
        assert process_tree(os.getpid(), "no-such-program") == []
        kill_processes(tree)
        parent.wait(5)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{worker}").exists():
            state = Path(f"/proc/{worker}/stat").read_text().rpartition(")")[2].split()[0]
            if state == "Z":
                break
            assert time.monotonic() < deadline, "the detached worker survived"
            time.sleep(0.02)
    finally:
        parent.kill()
        parent.wait()
