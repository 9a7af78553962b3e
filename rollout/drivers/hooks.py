"""Lifecycle hooks as Ansible: one playbook run through ansible-runner per hook.

The inventory holds the nodes of the replacement that are running, each in
the pool's group (its group_vars apply) and in ``new`` or ``old``; ``node``
holds the one the point is about. A hook on the controller gets no node:
its play targets ``localhost``. The variables (all named ``rollout_*``) and
the hook's own ``vars`` reach ansible-playbook as an extra-vars file in a
0700 private directory that is removed after the run (never on a command
line), like every other playbook run of :mod:`rollout.drivers.ansible`.

``rollout_hook_store`` is a directory on the controller, private (0700) and
the same for every hook of one replacement (by rollout id and replacement
index, whatever the attempt), so a hook that stores data off the old node
and one that loads it onto the new one meet there. It is left in place:
the data may be needed to repair a node by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rollout import names
from rollout.drivers.ansible import run_playbook
from rollout.errors import HookFailed
from rollout.hooks import HookCall
from rollout.model import Node, SshTarget, VaultOptions
from rollout.protocols import HookRunner


class AnsibleHookRunner(HookRunner):
    """Runs a pool's hooks: playbooks of ``project`` against the nodes
    ``ssh_for`` reaches; logs in ``log_dir``, hook data under ``store_root``."""

    def __init__(self, project: Path, role: str, ssh_for: Callable[[Node], SshTarget], *,
                 log_dir: Path, store_root: Path, inventory: Path | None = None,
                 vault: VaultOptions | None = None) -> None:
        self.project = project
        self.role = role
        self.ssh_for = ssh_for
        self.log_dir = log_dir
        self.store_root = store_root
        self.inventory = inventory
        self.vault = vault

    def store_dir(self, call: HookCall) -> Path:
        """The controller-side directory a replacement's hooks share."""
        rid = names.rollout_id(call.rollout_id, "rollout id")
        where = self.store_root / rid / ("rollout" if call.index is None else str(call.index))
        for path in (self.store_root, self.store_root / rid, where):
            path.mkdir(mode=0o700, exist_ok=True)
            path.chmod(0o700)
        return where

    def extravars(self, call: HookCall) -> dict[str, object]:
        """What the playbook is told: the hook's own vars, then the rollout's."""
        def about(prefix: str, node: Node | None) -> dict[str, object]:
            return {f"{prefix}": node.name if node else "",
                    f"{prefix}_address": node.address if node else ""}

        return {
            **call.hook.vars,
            "rollout_hook_point": call.point.value,
            "rollout_id": call.rollout_id,
            "rollout_role": self.role,
            "rollout_image_id": call.image.id,
            "rollout_image_version": call.image.version,
            "rollout_index": call.index,
            "rollout_hook_store": str(self.store_dir(call)),
            **about("rollout_node", call.node),
            **about("rollout_new_node", call.new),
            **about("rollout_old_node", call.old),
        }

    def run(self, call: HookCall) -> None:
        hosts: dict[str, SshTarget] = {}
        groups: dict[str, list[str]] = {"new": [], "old": [], "node": []}
        for group, node in (("new", call.new), ("old", call.old), ("node", call.node)):
            if node is not None and not call.point.on_controller:
                hosts.setdefault(node.name, self.ssh_for(node))
                groups[group].append(node.name)
        where = f"{call.point.value} hook {call.hook.playbook}"
        which = "rollout" if call.index is None else str(call.index)
        log = f"hook-{call.rollout_id}-{call.point.value}-{which}"
        result = run_playbook(
            self.project, call.hook.playbook, hosts, self.extravars(call),
            log_dir=self.log_dir, timeout=call.hook.timeout, check=False, log_name=log,
            group=self.role, vault=self.vault, inventory=self.inventory, host_groups=groups,
        )
        if not result.ok:
            raise HookFailed(f"{where}: {result.describe()}")
