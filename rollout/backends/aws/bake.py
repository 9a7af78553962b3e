"""The AMI bake: a builder instance, the same Ansible bake as the lab, an AMI.

1. Check everything that needs no AWS call: role, version, extra vars, base AMI.
2. Launch a builder from the base AMI (or the parent image's AMI), tagged
   ``rollout:builder`` and never ``rollout:role``/``rollout:env``, so no pool
   ever lists it as a node.
3. Wait until it runs, passes its status checks and answers SSH.
4. Run ``playbooks/bake.yml`` over SSH through ``run_playbook`` (by default
   :func:`rollout.drivers.ansible.run_playbook`; tests replace it at that seam).
5. Smoke-gate the builder with the ``SmokeRunner`` passed in (None: skip,
   and the image is registered with ``verified: false``).
6. ``create_image``, tagged at creation with the manifest fields (see
   :mod:`rollout.backends.aws.images`), and wait until it is ``available``.
7. ALWAYS terminate the builder, on success, failure or Ctrl-C; an AMI whose
   creation started but did not finish is deregistered.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rollout import names
from rollout.backends.aws import CREATED_BY, TAG_BUILDER, TAG_CREATED_BY, TAG_NAME
from rollout.backends.aws.ec2 import (
    Probe,
    run_params,
    ssh_port_probe,
    ssh_target_for,
    template_ref,
)
from rollout.backends.aws.images import AwsImageStore, image_tags
from rollout.backends.aws.session import AwsClients, aws_errors, tag_list
from rollout.backends.lab.images import iso_utc, new_image_id, role_checksum, roles_commit
from rollout.clock import SystemClock
from rollout.config import AwsSettings
from rollout.drivers import ansible
from rollout.errors import BakeError, ConfigError, NotFoundError, RolloutError
from rollout.model import Image, Node, NodeState, SshTarget
from rollout.protocols import Clock, SmokeRunner

log = logging.getLogger("rollout.backends.aws")


class RunPlaybook(Protocol):
    """The seam where Ansible runs: :func:`rollout.drivers.ansible.run_playbook`'s shape."""

    def __call__(
        self,
        project: Path,
        playbook: str,
        hosts: dict[str, SshTarget],
        extravars: dict[str, object],
        *,
        log_dir: Path,
        cancel: Callable[[], bool] | None = None,
        timeout: float | None = None,
        log_name: str | None = None,
        group: str | None = None,
    ) -> Any: ...


@dataclass(frozen=True)
class BakeTimeouts:
    running: float = 600.0  # launch until running with status checks ok
    ssh: float = 300.0
    playbook: float = 1800.0
    image: float = 3600.0  # create_image until available (large volumes are slow)
    poll: float = 5.0


def bake_ami(
    project: Path,
    settings: AwsSettings,
    role: str,
    version: str,
    *,
    smoke: SmokeRunner | None,
    log_dir: Path,
    clients: AwsClients | None = None,
    parent: Image | None = None,
    extra_vars: Mapping[str, str] | None = None,
    run_playbook: RunPlaybook = ansible.run_playbook,
    ssh_probe: Probe = ssh_port_probe,
    clock: Clock | None = None,
    timeouts: BakeTimeouts = BakeTimeouts(),
    cancel: Callable[[], bool] | None = None,
    on_event: Callable[[str], None] | None = None,
) -> Image:
    """Bake ``role`` at ``version`` into a tagged AMI and return its Image.

    Raises BakeError (Ansible or smoke failed), ConfigError/NotFoundError (bad
    input, found before anything is launched) or DriverError (AWS refused).
    Whatever happens, the builder is terminated before this returns.
    """
    clock = clock or SystemClock()
    say = on_event or (lambda _msg: None)
    extra = dict(extra_vars or {})
    names.name(role, "role")
    names.version(version)
    for key in extra:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key):
            raise ConfigError(f"--extra-var: {key!r} is not a valid Ansible variable name")
    if not (project / "roles" / role).is_dir():
        known = sorted(p.name for p in (project / "roles").glob("*") if p.is_dir())
        raise NotFoundError(
            f"unknown role {role!r} (roles: {', '.join(known) or 'none'})",
            hint=f"create roles/{role}/ in {project}",
        )
    base = parent.location if parent is not None else settings.base_ami
    if not base or not base.startswith("ami-"):
        raise ConfigError(
            "aws.base_ami: the bake needs a base AMI id (ami-...)",
            hint="set aws.base_ami in the pool's group_vars, or pass a parent image",
        )
    if not (settings.builder_instance_type or settings.instance_type or settings.launch_template):
        raise ConfigError(
            "aws: the bake needs builder_instance_type, instance_type or "
            "launch_template to size the builder"
        )
    clients = clients or AwsClients.from_settings(settings)
    image_id = new_image_id(role, version)
    builder_name = f"bake-{secrets.token_hex(4)}"
    started = clock.now()
    builder: str | None = None
    ami: str | None = None
    finished = False
    try:
        say(f"launching builder {builder_name} from {base}")
        builder = _launch_builder(clients, settings, base, builder_name, image_id, role)
        node = _wait_builder(
            clients, settings, builder, builder_name, image_id, role, ssh_probe, clock, timeouts
        )
        # Like a pool node: its host key is looked up under its instance id.
        target = ssh_target_for(node, settings)
        say(f"running playbooks/bake.yml on {builder} ({node.address})")
        extravars: dict[str, object] = {
            **extra,
            "rollout_role": role,
            "rollout_image_version": version,
            "rollout_image_id": image_id,
        }
        # The playbook targets the group "builder", as on the lab.
        result = run_playbook(
            project,
            "playbooks/bake.yml",
            {builder_name: target},
            extravars,
            log_dir=log_dir,
            cancel=cancel,
            timeout=timeouts.playbook,
            log_name=f"bake-{image_id}",
            group="builder",
        )
        if not getattr(result, "ok", True):  # run_playbook raises; a seam may not
            raise BakeError(
                f"bake {image_id}: playbooks/bake.yml failed on {builder}: "
                f"status {getattr(result, 'status', '?')}"
            )
        candidate = Image(
            id=image_id,
            role=role,
            version=version,
            created_at=clock.now(),
            parent=parent.id if parent else None,
        )
        smoke_info: dict[str, Any] = {"skipped": True}
        if smoke is not None:
            say(f"smoke-gating builder {builder}")
            verdict = smoke.run(node, candidate)
            smoke_info = {"passed": verdict.passed, "summary": verdict.summary}
            if not verdict.passed:
                raise BakeError(
                    f"bake {image_id}: the smoke gate failed on builder {builder}: "
                    f"{verdict.summary}",
                    hint="fix the role (or the smoke suite) and bake again; nothing was registered",
                )
        commit, dirty = roles_commit(project)
        manifest: dict[str, Any] = {
            "role_checksum": role_checksum(project, role),
            "roles_commit": commit,
            "roles_dirty": dirty,
            "base": base,
            "builder": builder,
            "created_at": iso_utc(candidate.created_at),
            "bake_seconds": round(clock.now() - started, 1),
            "ansible": _stats_summary(getattr(result, "stats", {}) or {}),
            "smoke": json.dumps(smoke_info, sort_keys=True),
            "extra_vars": json.dumps(extra, sort_keys=True) if extra else None,
        }
        image = Image(
            id=image_id,
            role=role,
            version=version,
            created_at=candidate.created_at,
            parent=candidate.parent,
            verified=smoke is not None,
            manifest=manifest,
        )
        say(f"creating AMI {image_id} from {builder}")
        ami = _create_image(clients, settings, builder, image)
        _wait_available(clients, ami, image_id, clock, timeouts)
        _tag_snapshots(clients, ami, image)
        finished = True
        say(f"AMI {ami} is available as {image_id}")
        return AwsImageStore(clients).get(ami)
    finally:
        problems: list[str] = []
        if ami is not None and not finished:
            problems += _forget_image(clients, ami)
        if builder is not None:
            problems += _terminate(clients, builder, clock)
        if problems:
            text = "; ".join(problems)
            log.error("bake %s cleanup: %s", image_id, text)
            if finished:
                raise BakeError(
                    f"bake {image_id}: the AMI was made but cleanup failed: {text}",
                    hint="terminate the builder by hand",
                )


def _launch_builder(
    clients: AwsClients, settings: AwsSettings, base: str, name: str, image_id: str, role: str
) -> str:
    tags = {
        TAG_NAME: name,
        TAG_BUILDER: image_id,
        "rollout:bake-role": role,
        TAG_CREATED_BY: CREATED_BY,
    }
    template = None
    if settings.launch_template:
        template = template_ref(settings.launch_template, settings.launch_template_version)
    params = run_params(
        settings,
        ami=base,
        tags=tags,
        template=template,
        subnet=settings.subnets[0] if settings.subnets else None,
        instance_type=settings.builder_instance_type or settings.instance_type,
    )
    params["ClientToken"] = f"{image_id}-builder"[:64]
    # A builder must not outlive a lost controller: shutting it down ends it.
    params["InstanceInitiatedShutdownBehavior"] = "terminate"
    with aws_errors("launch builder", f"{name} from {base}"):
        reply = clients.ec2.run_instances(**params)
    return str(reply["Instances"][0]["InstanceId"])


def _wait_builder(
    clients: AwsClients,
    settings: AwsSettings,
    iid: str,
    name: str,
    image_id: str,
    role: str,
    ssh_probe: Probe,
    clock: Clock,
    timeouts: BakeTimeouts,
) -> Node:
    deadline = clock.now() + timeouts.running
    detail = "not polled yet"
    while True:
        with aws_errors("describe builder status", iid):
            statuses = clients.ec2.describe_instance_status(
                InstanceIds=[iid], IncludeAllInstances=True
            )["InstanceStatuses"]
        st = statuses[0] if statuses else {}
        state = st.get("InstanceState", {}).get("Name", "unknown")
        checks = (
            st.get("InstanceStatus", {}).get("Status"),
            st.get("SystemStatus", {}).get("Status"),
        )
        if state in ("shutting-down", "terminated", "stopped"):
            raise BakeError(
                f"bake {image_id}: builder {iid} is {state} before the bake began",
                hint="see the instance's console output in EC2",
            )
        if state == "running" and checks == ("ok", "ok"):
            break
        detail = f"{state}, checks {checks[0]}/{checks[1]}"
        if clock.now() >= deadline:
            raise BakeError(
                f"bake {image_id}: builder {iid} not running with status checks "
                f"ok within {timeouts.running:.0f}s ({detail})"
            )
        clock.sleep(timeouts.poll)
    with aws_errors("describe builder", iid):
        inst = clients.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    key = "PublicIpAddress" if settings.ssh_address == "public" else "PrivateIpAddress"
    address = str(inst.get(key) or "")
    if not address:
        raise BakeError(
            f"bake {image_id}: builder {iid} has no {settings.ssh_address} IP",
            hint="use a subnet that assigns one, or aws.ssh_address: private",
        )
    node = Node(
        name=name,
        address=names.address(address, f"builder {iid}"),
        role=role,
        env="bake",
        image_id=image_id,
        image_version="",
        state=NodeState.RUNNING,
        created_at=clock.now(),
        target=iid,
    )
    deadline = clock.now() + timeouts.ssh
    while True:
        answer = ssh_probe(node)
        if answer.ready:
            return node
        if clock.now() >= deadline:
            raise BakeError(
                f"bake {image_id}: builder {iid} ({address}) does not answer SSH "
                f"within {timeouts.ssh:.0f}s: {answer.detail}",
                hint="check the security group allows SSH from this controller",
            )
        clock.sleep(timeouts.poll)


def _create_image(clients: AwsClients, settings: AwsSettings, builder: str, image: Image) -> str:
    tags = dict(settings.extra_tags)
    tags.update(image_tags(image))
    with aws_errors("create image", f"{image.id} from builder {builder}"):
        reply = clients.ec2.create_image(
            InstanceId=builder,
            Name=image.id,
            Description=f"rollout image {image.id}",
            # Tagged at creation, so there is no moment the AMI exists untagged.
            TagSpecifications=[{"ResourceType": "image", "Tags": tag_list(tags)}],
        )
    return str(reply["ImageId"])


def _snapshots(clients: AwsClients, ami: str) -> list[str]:
    """The EBS snapshots behind an AMI."""
    with aws_errors("describe image", ami):
        images = clients.ec2.describe_images(ImageIds=[ami])["Images"]
    return [
        m["Ebs"]["SnapshotId"]
        for i in images
        for m in i.get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("SnapshotId")
    ]


def _tag_snapshots(clients: AwsClients, ami: str, image: Image) -> None:
    """Tag the AMI's snapshots too (cost reports); moto cannot tag them at creation."""
    snaps = _snapshots(clients, ami)
    if snaps:
        with aws_errors("tag snapshots", ", ".join(snaps)):
            clients.ec2.create_tags(
                Resources=snaps,
                Tags=tag_list({"rollout:image-id": image.id, TAG_CREATED_BY: CREATED_BY}),
            )


def _wait_available(
    clients: AwsClients, ami: str, image_id: str, clock: Clock, timeouts: BakeTimeouts
) -> None:
    deadline = clock.now() + timeouts.image
    while True:
        with aws_errors("describe image", f"{ami} ({image_id})"):
            images = clients.ec2.describe_images(ImageIds=[ami])["Images"]
        state = images[0].get("State", "unknown") if images else "missing"
        if state == "available":
            return
        if state in ("failed", "invalid", "deregistered", "error", "missing"):
            reason = images[0].get("StateReason", {}).get("Message", "") if images else ""
            raise BakeError(f"bake {image_id}: AMI {ami} is {state} {reason}".rstrip())
        if clock.now() >= deadline:
            raise BakeError(
                f"bake {image_id}: AMI {ami} still {state} after {timeouts.image:.0f}s",
                hint="raise the image timeout",
            )
        clock.sleep(timeouts.poll)


def _forget_image(clients: AwsClients, ami: str) -> list[str]:
    """Deregister a half-made AMI and delete its snapshots (best effort)."""
    try:
        snaps = _snapshots(clients, ami)
        with aws_errors("deregister image", ami):
            clients.ec2.deregister_image(ImageId=ami)
        for snap in snaps:
            with aws_errors("delete snapshot", snap):
                clients.ec2.delete_snapshot(SnapshotId=snap)
    except RolloutError as exc:
        return [f"could not remove the unfinished AMI {ami}: {exc.message}"]
    return []


def _terminate(clients: AwsClients, builder: str, clock: Clock) -> list[str]:
    # Retried on its own: after Ctrl-C this is the one call that must land.
    for attempt in range(3):
        try:
            with aws_errors("terminate builder", builder):
                clients.ec2.terminate_instances(InstanceIds=[builder])
            return []
        except NotFoundError:
            return []
        except RolloutError as exc:
            if attempt == 2:
                return [
                    f"builder {builder} may still run ({exc.message}); terminate it: "
                    f"aws ec2 terminate-instances --instance-ids {builder}"
                ]
            clock.sleep(1.0 + attempt)
    return []


def _stats_summary(stats: Mapping[str, Mapping[str, int]]) -> str:
    totals = {key: sum(per_host.values()) for key, per_host in stats.items()}
    return ",".join(f"{k}={v}" for k, v in sorted(totals.items()))
