"""ansible-playbook as the bake runs it, for real, on this machine (a play with
``connection: local``): extra vars reach the play without appearing on any
command line, the project's ansible.cfg is in force (its roles_path finds a
role), a vault password file decrypts a vaulted role variable, and the
environment's vaulted group_vars reach the builder as a member of its role's
group."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rollout.drivers.ansible import run_playbook, write_extravars
from rollout.model import SshTarget, VaultOptions

MARKER = "s3cret-marker-5b1e"
PLAY = """\
- name: Check what the play sees
  hosts: builder
  connection: local
  gather_facts: false
  roles:
    - shelf_role
  tasks:
    - name: Read every command line on the machine
      ansible.builtin.shell: "cat /proc/[0-9]*/cmdline | tr '\\\\0' ' '"
      register: cmdlines
      changed_when: false
    - name: The secret is not on any of them
      ansible.builtin.assert:
        that:
          - marker not in cmdlines.stdout
          - marker == expected_marker
          - vaulted == 'from-the-vault'
          - group_secret == 'from-group-vault'
          - "'web' in group_names"
"""


def _project(tmp: Path) -> Path:
    project = tmp / "project"
    (project / "playbooks").mkdir(parents=True)
    (project / "playbooks" / "check.yml").write_text(PLAY)
    role = project / "shelf" / "shelf_role"
    (role / "vars").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "tasks" / "main.yml").write_text(
        "- name: Role ran\n  ansible.builtin.debug:\n    msg: shelf\n")
    (project / "pw").write_text("pw-1234\n")
    vars_file = role / "vars" / "main.yml"
    vars_file.write_text("vaulted: from-the-vault\n")
    subprocess.run([str(Path(sys.executable).parent / "ansible-vault"), "encrypt",
                    "--vault-password-file", str(project / "pw"), str(vars_file)],
                   check=True, capture_output=True)
    (project / "ansible.cfg").write_text("[defaults]\nroles_path = shelf\n")
    # The environment's inventory: the builder sees the group_vars of its role's
    # group, a vault-encrypted file among them.
    group_vars = project / "inventories" / "lab" / "group_vars" / "web"
    group_vars.mkdir(parents=True)
    (group_vars.parent.parent / "hosts").write_text("[web]\n")
    (group_vars / "vault.yml").write_text("group_secret: from-group-vault\n")
    subprocess.run([str(Path(sys.executable).parent / "ansible-vault"), "encrypt",
                    "--vault-password-file", str(project / "pw"),
                    str(group_vars / "vault.yml")], check=True, capture_output=True)
    return project


def test_extra_vars_vault_and_ansible_cfg_reach_the_play_off_the_command_line(
        tmp_path: Path) -> None:
    project = _project(tmp_path)
    target = SshTarget(host="127.0.0.1", port=22, user="root")
    result = run_playbook(
        project, "playbooks/check.yml", {"b1": target},
        {"marker": MARKER, "expected_marker": MARKER}, log_dir=tmp_path / "logs",
        group="builder", vault=VaultOptions(password_files=(str(project / "pw"),)),
        inventory=project / "inventories" / "lab", member_of=("web",), check=False)
    log = result.log_path.read_text() if result.log_path else ""
    assert result.ok, log
    assert "shelf" in log
    assert MARKER not in log


def test_extravars_file_is_private(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    path = write_extravars(private, {"token": MARKER})
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert MARKER in path.read_text()
