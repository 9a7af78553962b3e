"""The Ansible hook runner, for real on this machine (plays on localhost with
``connection: local``): the hook's variables reach the play off the command
line, the store directory is private, a failed or slow play is a HookFailed
naming the point; and the inventory puts a replacement's nodes in ``new`` and
``old``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from rollout.drivers.ansible import build_inventory
from rollout.drivers.hooks import AnsibleHookRunner
from rollout.errors import HookFailed
from rollout.hooks import Hook, HookCall, HookPoint
from rollout.model import Image, Node, NodeState, SshTarget

MARKER = "hook-s3cret-7c2d"
PLAY = """\
- name: A hook on the controller
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Read every command line on the machine
      ansible.builtin.shell: "cat /proc/[0-9]*/cmdline | tr '\\\\0' ' '"
      register: cmdlines
      changed_when: false
    - name: The variables are there, the secret on no command line
      ansible.builtin.assert:
        that:
          - secret not in cmdlines.stdout
          - secret == expected
          - rollout_hook_point == 'after_rollout'
          - rollout_image_id == 'web-2.0.0'
          - rollout_node == ''
    - name: Leave a mark in the store
      ansible.builtin.copy:
        dest: "{{ rollout_hook_store }}/mark"
        content: "{{ rollout_id }}"
        mode: "0600"
"""
FAILS = """\
- name: A hook that fails
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Give up
      ansible.builtin.fail:
        msg: the registry said no
"""
SLOW = """\
- name: A hook that hangs
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Wait too long
      ansible.builtin.pause:
        seconds: 60
"""


def _runner(tmp_path: Path, playbook: str, text: str) -> AnsibleHookRunner:
    (tmp_path / "project" / "hooks").mkdir(parents=True, exist_ok=True)
    (tmp_path / "project" / playbook).write_text(text)
    return AnsibleHookRunner(tmp_path / "project", "web", lambda n: SshTarget(host=n.address),
                             log_dir=tmp_path / "logs", store_root=tmp_path / "hooks")


def _call(point: HookPoint, playbook: str, **hook: object) -> HookCall:
    return HookCall(point=point, hook=Hook(playbook=playbook, **hook),  # type: ignore[arg-type]
                    rollout_id="rabc12345", image=Image(id="web-2.0.0", role="web",
                                                        version="2.0.0", created_at=0.0))


def test_a_controller_hook_gets_its_variables_off_the_command_line(tmp_path: Path) -> None:
    runner = _runner(tmp_path, "hooks/ok.yml", PLAY)
    runner.run(_call(HookPoint.AFTER_ROLLOUT, "hooks/ok.yml",
                     vars={"secret": MARKER, "expected": MARKER}))
    store = tmp_path / "hooks" / "rabc12345" / "rollout"
    assert (store / "mark").read_text() == "rabc12345"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert (tmp_path / "logs" / "hook-rabc12345-after_rollout-rollout.log").is_file()


def test_a_failed_play_is_a_hook_failure_naming_the_point(tmp_path: Path) -> None:
    runner = _runner(tmp_path, "hooks/fails.yml", FAILS)
    with pytest.raises(HookFailed, match=r"before_rollout hook hooks/fails\.yml: task 'Give up'"):
        runner.run(_call(HookPoint.BEFORE_ROLLOUT, "hooks/fails.yml"))


def test_a_play_past_its_timeout_is_killed_and_fails(tmp_path: Path) -> None:
    runner = _runner(tmp_path, "hooks/slow.yml", SLOW)
    with pytest.raises(HookFailed, match="timed out"):
        runner.run(_call(HookPoint.BEFORE_ROLLOUT, "hooks/slow.yml", timeout=3))


def _node(name: str, address: str) -> Node:
    return Node(name=name, address=address, role="web", env="lab", image_id="i",
                image_version="1", state=NodeState.RUNNING, created_at=0.0)


def test_the_inventory_puts_the_nodes_in_new_and_old() -> None:
    hosts = {"web-a": SshTarget(host="10.0.0.5"), "web-b": SshTarget(host="10.0.0.6")}
    inv = build_inventory(hosts, "web", host_groups={"new": ["web-b"], "old": ["web-a"],
                                                     "node": ["web-b"]})
    children = inv["all"]["children"]
    assert set(children["web"]["hosts"]) == {"web-a", "web-b"}
    assert set(children["new"]["hosts"]) == {"web-b"}
    assert set(children["old"]["hosts"]) == {"web-a"}
    assert children["web"]["hosts"]["web-b"]["ansible_host"] == "10.0.0.6"


def test_node_variables_name_the_new_and_the_old_node(tmp_path: Path) -> None:
    runner = _runner(tmp_path, "hooks/ok.yml", PLAY)
    new, old = _node("web-new", "10.0.0.9"), _node("web-old", "10.0.0.4")
    call = HookCall(point=HookPoint.AFTER_BOOT, hook=Hook(playbook="hooks/ok.yml"),
                    rollout_id="rabc12345", image=Image(id="web-2.0.0", role="web",
                                                        version="2.0.0", created_at=0.0),
                    index=2, node=new, new=new, old=old)
    extra = runner.extravars(call)
    assert extra["rollout_node"] == "web-new" and extra["rollout_node_address"] == "10.0.0.9"
    assert extra["rollout_old_node"] == "web-old" and extra["rollout_index"] == 2
    assert extra["rollout_hook_store"] == str(tmp_path / "hooks" / "rabc12345" / "2")
