"""EC2 pieces shared by the provider and the bake: launch parameters, the
readiness probes, and how an instance description becomes a :class:`Node`."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from rollout import names
from rollout.backends.aws import (
    TAG_ENV,
    TAG_IMAGE_ID,
    TAG_IMAGE_VERSION,
    TAG_NAME,
    TAG_ROLE,
    TAG_ROLLOUT_ID,
)
from rollout.backends.aws.session import tag_list, tags_of
from rollout.config import AwsSettings
from rollout.drivers.probe import ProbeError, http_get, tcp_open
from rollout.errors import ConfigError, DriverError
from rollout.model import Image, Node, NodeState, Readiness, SshTarget

Probe = Callable[[Node], Readiness]
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
_STATES = {
    "pending": NodeState.PENDING,
    "running": NodeState.RUNNING,
    "stopping": NodeState.STOPPED,
    "stopped": NodeState.STOPPED,
}


def expand_user(path: str | None) -> str | None:
    """``~`` expanded, for key and known_hosts paths from the inventory."""
    return os.path.expanduser(path) if path else None


def tcp_http_probe(
    node: Node,
    *,
    http_port: int = 80,
    path: str = "/healthz",
    ssh_port: int = 22,
    timeout: float = 4.0,
) -> Readiness:
    """One real probe: SSH's port accepts a connection and HTTP answers at all,
    both within ``timeout`` seconds in total (a peer that answers byte by byte
    cannot hold the observe loop). (``systemd`` stays empty: it would need a
    command over SSH.)"""
    host = node.address
    if not host:
        return Readiness(False, "the instance has no IP address yet")
    deadline = time.monotonic() + timeout
    try:
        tcp_open(host, ssh_port, timeout)
    except ProbeError as exc:
        return Readiness(False, f"ssh: {exc}")
    try:
        status = http_get(host, http_port, path, max(deadline - time.monotonic(), 0.001),
                          read_body=False).status
    except ProbeError as exc:
        return Readiness(False, str(exc), ssh=True)
    # Any answer means the service is up; whether it is *right* is the smoke gate's call.
    return Readiness(True, f"ssh and http answer (HTTP {status})", ssh=True, http=True)


def ssh_port_probe(node: Node) -> Readiness:
    """A builder's readiness: its SSH port accepts a connection within 3 s (the
    service is not configured yet, so there is no HTTP to ask)."""
    try:
        tcp_open(node.address, 22, timeout=3.0)
    except ProbeError as exc:
        return Readiness(False, f"ssh: {exc}")
    return Readiness(True, "ssh answers", ssh=True)


def template_ref(ref: str, version: str) -> dict[str, str]:
    key = "LaunchTemplateId" if ref.startswith("lt-") else "LaunchTemplateName"
    return {key: ref, "Version": version}


def run_params(
    settings: AwsSettings,
    *,
    ami: str,
    tags: dict[str, str],
    template: dict[str, str] | None,
    subnet: str | None,
    instance_type: str | None,
) -> dict[str, Any]:
    """``run_instances`` parameters for one instance of ``ami``: the launch
    template (if any) gives the rest, explicit settings override it."""
    tagged = tag_list({**settings.extra_tags, **tags})
    params: dict[str, Any] = {
        "ImageId": ami,
        "MinCount": 1,
        "MaxCount": 1,
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tagged},
            {"ResourceType": "volume", "Tags": tagged},
        ],
    }
    if template:
        params["LaunchTemplate"] = template
    if instance_type:
        params["InstanceType"] = instance_type
    if subnet:
        params["SubnetId"] = subnet
    if settings.security_groups:
        params["SecurityGroupIds"] = list(settings.security_groups)
    if settings.instance_profile:
        prof = settings.instance_profile
        params["IamInstanceProfile"] = {"Arn": prof} if prof.startswith("arn:") else {"Name": prof}
    if settings.key_name:
        params["KeyName"] = settings.key_name
    return params


def instance_node(
    inst: dict[str, Any],
    *,
    role: str,
    env: str,
    image: Image | None,
    ssh_address: str,
    lifecycle: str | None = None,
) -> Node:
    """The Node an instance description stands for (see the provider's table).
    ``image`` is the rollout image of the instance's AMI, when it is one."""
    tags = tags_of(inst)
    iid = str(inst["InstanceId"])
    ami = str(inst.get("ImageId", ""))
    try:
        name = names.name(tags.get(TAG_NAME, ""))
    except ConfigError:
        name = iid
    ip_key = "PublicIpAddress" if ssh_address == "public" else "PrivateIpAddress"
    labels = dict(tags)
    labels.update(
        {
            "aws:instance-id": iid,
            "aws:ami": ami,
            "aws:az": str(inst.get("Placement", {}).get("AvailabilityZone", "")),
            "aws:subnet": str(inst.get("SubnetId", "")),
        }
    )
    if lifecycle:
        labels["aws:asg-state"] = lifecycle
    launched = inst.get("LaunchTime")
    return Node(
        name=name,
        address=str(inst.get(ip_key) or ""),
        role=tags.get(TAG_ROLE, role),
        env=tags.get(TAG_ENV, env),
        image_id=image.id if image else tags.get(TAG_IMAGE_ID, ami),
        image_version=image.version if image else tags.get(TAG_IMAGE_VERSION, ""),
        state=_STATES.get(str(inst["State"]["Name"]), NodeState.GONE),
        created_at=float(launched.timestamp()) if launched is not None else 0.0,
        target=iid,
        rollout_id=tags.get(TAG_ROLLOUT_ID) or None,
        labels=labels,
    )


def ssh_target_for(node: Node, aws: AwsSettings) -> SshTarget:
    """How to reach an instance over SSH, per the pool's aws settings (the same
    for pool nodes and bake builders).

    The host key is kept under the instance id (``HostKeyAlias``), not the
    address: AWS gives a private address to a later instance, whose new key
    would otherwise clash with the old one's and fail verification (which
    pushes people to turn checking off). A known_hosts file for such a pool
    lists ``i-0abc... ssh-ed25519 AAAA...`` lines, or an ``@cert-authority *``
    line for host certificates."""
    if not node.address:
        raise DriverError(
            f"ssh {node.name}: instance {node.target} has no {aws.ssh_address} IP address",
            hint="use aws.ssh_address: private from inside the VPC",
        )
    return SshTarget(
        host=names.address(node.address, f"node {node.name}"),
        user=aws.ssh_user,
        key_file=expand_user(aws.ssh_key),
        known_hosts=expand_user(aws.known_hosts),
        host_key_policy=aws.host_key_policy,
        host_key_alias=instance_id(node),
    )


def instance_id(node: Node) -> str:
    """The node's instance id (``i-`` and hex), checked: it names host keys."""
    iid = node.target
    if not re.fullmatch(r"i-[0-9a-f]{8,32}", iid):
        raise DriverError(f"ssh {node.name}: {iid!r} is not an EC2 instance id")
    return iid
