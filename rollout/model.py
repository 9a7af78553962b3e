"""Plain value types shared by the core, the drivers and the CLI.

They are frozen dataclasses so that the decision core can treat an observation
of the world as a value: compare it, store it in the journal, replay it in tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from rollout import names
from rollout.errors import ConfigError

# ssh_config's StrictHostKeyChecking value for each host_key_policy.
_POLICIES = {"verify": "yes", "accept-new": "accept-new", "ignore": "no"}
_SSH_HOST = re.compile(r"^[A-Za-z0-9:._-]{1,253}$")


class NodeState(StrEnum):
    """Lifecycle of a node as its provider sees it."""

    PENDING = "pending"  # launched, not yet running (booting)
    RUNNING = "running"  # the machine runs; readiness is a separate probe
    STOPPED = "stopped"  # stopped but restorable (same name, address, image)
    # Destroy was asked and the machine is going away, but it still holds
    # resources (the lab: its netns, veth and record) until the core's
    # finish_removal step releases them.
    REMOVING = "removing"
    GONE = "gone"  # destroyed or never existed


class Setup(StrEnum):
    """A step the provider owes a node before it can be ready. Readiness names
    it; the core takes it as a journaled action (observation never mutates)."""

    ATTACH_VOLUME = "attach_volume"  # its data volume is free and waits to be attached
    JOIN_GROUP = "join_group"  # it answers, but is not yet an in-service group member


class Admin(StrEnum):
    """The administrative state the controller sets on an LB member."""

    READY = "ready"  # takes traffic when healthy
    DRAIN = "drain"  # keeps its sessions, gets no new ones
    MAINT = "maint"  # out of service


class Health(StrEnum):
    """What the LB's own health checks say about a member."""

    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"  # no check result yet (initial, or checks disabled)


@dataclass(frozen=True)
class LbCapacity:
    """The most members a load balancer's backend can hold, and how to raise it
    (the setting to change, named for the operator)."""

    limit: int
    raise_with: str


class FailureKind(StrEnum):
    """What a failed replacement failed at, so that callers decide on a kind
    instead of parsing the core's message text."""

    BOOT = "boot"  # the new node never became ready (or booted degraded)
    SMOKE = "smoke"  # the new node failed its smoke test, or ran past timeouts.smoke
    LB = "lb"  # the new node did not come UP in the load balancer in time
    GONE = "gone"  # the new node disappeared before it served
    DRIVER = "driver"  # a driver call (launch, LB change, stop...) raised
    HOOK = "hook"  # a lifecycle hook's playbook failed or ran past its timeout
    SHADOW = "shadow"  # the dark-launch gate refused the new node before it served


@dataclass(frozen=True)
class Node:
    """One server of a pool.

    ``target`` is what the load balancer knows the node by: an IP address for
    HAProxy, an instance id for an ELBv2 instance target group. ``labels`` carry
    provider tags such as the rollout id that created the node.
    """

    name: str
    address: str
    role: str
    env: str
    image_id: str
    image_version: str
    state: NodeState
    created_at: float
    target: str = ""
    rollout_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def lb_target(self) -> str:
        return self.target or self.address


@dataclass(frozen=True)
class LaunchSpec:
    """What to start: a node from ``image`` for a pool, owned by a rollout."""

    name: str
    role: str
    env: str
    image: Image
    rollout_id: str | None = None
    # For providers that hand a data volume from an old node to its replacement.
    volume_from: str | None = None


@dataclass(frozen=True)
class Readiness:
    """One readiness probe of a node: ssh up, systemd running, HTTP answering."""

    ready: bool
    detail: str = ""
    ssh: bool = False
    systemd: str = ""  # output of `systemctl is-system-running`
    http: bool = False
    # The node will not become ready by waiting (systemd finished booting
    # "degraded": a unit failed). The controller fails the step at once.
    failed: bool = False
    # Not ready until the provider takes this step (Provider.attach_volume or
    # Provider.join_group); the core asks for it as an action.
    setup: Setup | None = None


@dataclass(frozen=True)
class Member:
    """One load-balancer member (an HAProxy server slot or an ELBv2 target).

    ``target`` matches ``Node.lb_target`` of the node behind it; an empty slot
    has ``target == ""``. Counters are cumulative since the member was added.
    """

    slot: str
    target: str
    admin: Admin
    health: Health
    sessions: int = 0  # current sessions (HAProxy scur)
    total_sessions: int = 0  # HAProxy stot
    http_5xx: int = 0  # responses with status 5xx
    check_failures: int = 0  # failed health checks (chkfail)
    check_downs: int = 0  # UP->DOWN transitions (chkdown): health flaps
    port: int | None = None
    # The member's share of traffic relative to the others: its weight now and
    # the weight it has when nobody changed it (HAProxy's initial weight).
    # None when the load balancer has no per-member weights.
    weight: int | None = None
    normal_weight: int | None = None

    @property
    def in_service(self) -> bool:
        return bool(self.target) and self.admin is Admin.READY and self.health is Health.UP


@dataclass(frozen=True)
class Image:
    """A baked, registered image. ``location`` is a directory for the lab and
    an AMI id for AWS."""

    id: str
    role: str
    version: str
    created_at: float
    location: str = ""
    parent: str | None = None
    verified: bool = True  # False when baked with --no-smoke
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SmokeResult:
    """The outcome of a smoke gate on one node."""

    passed: bool
    duration: float
    summary: str
    junit_path: str | None = None
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class SshTarget:
    """How to reach a node over SSH, with host-key verification on by default.

    The lab knows every node's host key (it generates them), so it passes a
    ``known_hosts`` file and strict checking; AWS nodes use the configured policy
    and keep each host key under the instance id (``host_key_alias``), since
    AWS hands a private address to a later instance.

    Every field ends up in an ssh_config or on ssh's command line, so each is
    checked here (a newline in ``user`` would add an ssh_config directive).
    """

    host: str
    user: str = "root"
    port: int = 22
    key_file: str | None = None
    known_hosts: str | None = None
    host_key_policy: str = "verify"  # verify | accept-new | ignore
    host_key_alias: str | None = None  # the name the host key is kept under

    def __post_init__(self) -> None:
        where = f"ssh target {self.host!r}"
        if not isinstance(self.host, str) or not _SSH_HOST.fullmatch(self.host):
            raise ConfigError(f"{where}: not an IP address or host name")
        names.ssh_user(self.user, where)
        names.port(self.port, where)
        if self.key_file is not None:
            names.ssh_path(self.key_file, "key file", where)
        if self.known_hosts is not None:
            names.ssh_path(self.known_hosts, "known_hosts file", where)
        if self.host_key_alias is not None:
            names.host_key_alias(self.host_key_alias, where)
        if self.host_key_policy not in _POLICIES:
            raise ConfigError(f"{where}: host_key_policy {self.host_key_policy!r} is not one "
                              f"of {', '.join(_POLICIES)}")

    def ssh_options(self) -> list[str]:
        """``-o`` options for ssh(1), ansible_ssh_common_args and testinfra.
        Values holding a space are quoted the way ssh's ``-o`` parser reads."""
        opts = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={names.ssh_quote(self.known_hosts)}"]
        if self.host_key_alias:
            opts += ["-o", f"HostKeyAlias={self.host_key_alias}"]
        policy = _POLICIES[self.host_key_policy]
        opts += ["-o", f"StrictHostKeyChecking={policy}"]
        if self.host_key_policy == "ignore":
            opts += ["-o", "UserKnownHostsFile=/dev/null"]
        if self.key_file:
            opts += ["-o", "IdentitiesOnly=yes", "-i", self.key_file]
        return opts


@dataclass(frozen=True)
class VaultOptions:
    """How Ansible finds vault passwords, as ansible-playbook's options say it:
    ``--vault-password-file`` (repeatable) and ``--vault-id [ID@]SOURCE``
    (repeatable). ``ANSIBLE_VAULT_PASSWORD_FILE`` and the project's ansible.cfg
    (``vault_password_file``, ``vault_identity_list``) are read by Ansible itself."""

    password_files: tuple[str, ...] = ()
    vault_ids: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        """The same options for an ansible-playbook command line (paths and ids
        only: a password never appears in them)."""
        args: list[str] = []
        for path in self.password_files:
            args += ["--vault-password-file", path]
        for vault_id in self.vault_ids:
            args += ["--vault-id", vault_id]
        return args


@dataclass(frozen=True)
class BakeRequest:
    """One bake, checked before anything starts (``rollout.bake.request.check_request``).

    ``image_id`` is minted for this bake; ``extra_vars`` are the user's own
    (never a ``rollout_*`` name: the pipeline sets those); ``smoke`` False
    bakes without the smoke gate and registers the image unverified.
    ``gather_facts`` and ``gather_subset`` come from the pool's ``bake``
    settings; ``vault`` says where the vault passwords are; ``inventory`` is
    the environment's inventory directory, whose variables for the role's group
    the bake sees (None: only the project's roles and playbook).
    """

    project: Path
    role: str
    version: str
    image_id: str
    parent: Image | None = None
    extra_vars: dict[str, str] = field(default_factory=dict)
    smoke: bool = True
    gather_facts: bool = True
    gather_subset: tuple[str, ...] = ()
    vault: VaultOptions = field(default_factory=VaultOptions)
    inventory: Path | None = None

