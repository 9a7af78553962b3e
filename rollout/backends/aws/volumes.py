"""Data volumes of AWS pools: one EBS volume per slot, moved between nodes.

A pool with ``volume`` set keeps one EBS volume per node, tagged with the pool
(``rollout:role``, ``rollout:env``), its slot and its holder:

| tag                       | value                                              |
|---------------------------|----------------------------------------------------|
| ``rollout:volume-slot``   | ``ENV-ROLE-N``: stays with the data for its life   |
| ``rollout:volume-holder`` | the node (Name) the volume belongs to now          |
| ``rollout:volume-previous`` | the node it belonged to before the last hand-over |

* A fresh node gets a new volume in its availability zone (``aws.volume_size``
  GiB, ``aws.volume_type``), attached by :meth:`PoolVolumes.attach_held` once
  the instance runs (``AttachVolume`` wants a running or stopped instance):
  the readiness probe only reads :meth:`PoolVolumes.attachment` and names the
  step, which the core takes as a journaled action.
* :meth:`PoolVolumes.hand_over` moves the volume of a STOPPED old node to its
  replacement: it refuses while the old instance is not stopped, detaches,
  and retags the holder. The replacement is launched in the volume's zone.
* :meth:`PoolVolumes.take_back` gives it back to the old node on restore; it
  refuses while the replacement's instance still runs.

Mounting the device at ``volume`` inside the node is the image's job (an
fstab entry with ``nofail``, or user data): rollout only moves the disk.
"""

from __future__ import annotations

from typing import Any

from rollout.backends.aws import TAG_ENV, TAG_NAME, TAG_ROLE
from rollout.backends.aws.session import AwsClients, aws_errors, tag_list, tags_of
from rollout.errors import DriverError
from rollout.protocols import Clock

TAG_VOLUME_SLOT = "rollout:volume-slot"
TAG_VOLUME_HOLDER = "rollout:volume-holder"
TAG_VOLUME_PREVIOUS = "rollout:volume-previous"
_GONE = ("shutting-down", "terminated")


class PoolVolumes:
    """The data volumes of one pool (see the module doc)."""

    def __init__(self, clients: AwsClients, env: str, role: str, *, size: int,
                 volume_type: str, device: str, clock: Clock, timeout: float = 120.0) -> None:
        self.clients = clients
        self.env = env
        self.role = role
        self.size = size
        self.volume_type = volume_type
        self.device = device
        self.clock = clock
        self.timeout = timeout

    # -- finding ------------------------------------------------------------

    def all(self) -> list[dict[str, Any]]:
        filters = [{"Name": f"tag:{TAG_ROLE}", "Values": [self.role]},
                   {"Name": f"tag:{TAG_ENV}", "Values": [self.env]},
                   {"Name": "tag-key", "Values": [TAG_VOLUME_SLOT]}]
        with aws_errors("describe volumes", f"of pool {self.env}/{self.role}"):
            return list(self.clients.paginate("ec2", "describe_volumes", "Volumes",
                                              Filters=filters))

    def held_by(self, node: str) -> dict[str, Any] | None:
        return next((v for v in self.all() if tags_of(v).get(TAG_VOLUME_HOLDER) == node), None)

    def _get(self, volume_id: str) -> dict[str, Any]:
        with aws_errors("describe volume", volume_id):
            found = self.clients.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
        return dict(found[0])

    # -- changing -----------------------------------------------------------

    def create(self, node: str, zone: str) -> str:
        """A new volume for ``node`` in ``zone``, in the lowest free slot."""
        taken = {tags_of(v).get(TAG_VOLUME_SLOT) for v in self.all()}
        slot = next(f"{self.env}-{self.role}-{n}" for n in range(1, 100000)
                    if f"{self.env}-{self.role}-{n}" not in taken)
        tags = {TAG_ROLE: self.role, TAG_ENV: self.env, TAG_VOLUME_SLOT: slot,
                TAG_VOLUME_HOLDER: node, TAG_NAME: slot}
        with aws_errors("create volume", f"{slot} for {node} in {zone}"):
            reply = self.clients.ec2.create_volume(
                AvailabilityZone=zone, Size=self.size, VolumeType=self.volume_type,
                TagSpecifications=[{"ResourceType": "volume", "Tags": tag_list(tags)}])
        return str(reply["VolumeId"])

    def attachment(self, node: str, instance_id: str,
                   volume: dict[str, Any] | None = None) -> str:
        """Where ``node``'s volume is, read-only: ``none`` (it holds none),
        ``free`` (to attach), ``attaching``, ``attached`` or ``elsewhere``."""
        volume = volume if volume is not None else self.held_by(node)
        if volume is None:
            return "none"
        attachments = volume.get("Attachments") or []
        if attachments:
            att = attachments[0]
            if att.get("InstanceId") != instance_id:
                return "elsewhere"
            return "attached" if att.get("State") == "attached" else "attaching"
        return "free" if volume.get("State") == "available" else "attaching"

    def attach_held(self, node: str, instance_id: str) -> str:
        """Attach ``node``'s volume to its instance if it is free. Returns
        ``attached``, ``attaching``, ``none`` (it holds none) or ``elsewhere``."""
        volume = self.held_by(node)
        where = self.attachment(node, instance_id, volume)
        if where != "free" or volume is None:
            return where
        with aws_errors("attach volume", f"{volume['VolumeId']} to {instance_id} ({node})"):
            self.clients.ec2.attach_volume(VolumeId=volume["VolumeId"], InstanceId=instance_id,
                                           Device=self.device)
        return "attaching"

    def _detach(self, volume: dict[str, Any], why: str) -> None:
        vid = str(volume["VolumeId"])
        for att in volume.get("Attachments") or []:
            if att.get("State") in ("detaching", "detached"):
                continue
            with aws_errors("detach volume", f"{vid} ({why})"):
                self.clients.ec2.detach_volume(VolumeId=vid, InstanceId=att["InstanceId"],
                                               Device=att["Device"])
        deadline = self.clock.now() + self.timeout
        while self._get(vid).get("State") != "available":
            if self.clock.now() > deadline:
                raise DriverError(f"volume {vid} was not detached within {self.timeout:g}s "
                                  f"({why})", hint="check it in the EC2 console; try again")
            self.clock.sleep(1.0)

    def _retag(self, volume: dict[str, Any], holder: str, previous: str) -> None:
        with aws_errors("tag volume", str(volume["VolumeId"])):
            self.clients.ec2.create_tags(Resources=[volume["VolumeId"]], Tags=tag_list(
                {TAG_VOLUME_HOLDER: holder, TAG_VOLUME_PREVIOUS: previous}))

    def hand_over(self, old: str, old_state: str | None, new: str) -> dict[str, Any] | None:
        """Move ``old``'s volume to ``new``; None when ``old`` holds none.
        ``old_state`` is the old instance's state (None: it is gone)."""
        volume = self.held_by(old)
        if volume is None:
            return None
        if old_state is not None and old_state not in ("stopped", *_GONE):
            raise DriverError(
                f"cannot move volume {volume['VolumeId']} of {old} to {new}: {old} is "
                f"{old_state}, not stopped",
                hint="the old node must be stopped before its volume moves (strategy in_place)")
        self._detach(volume, f"from {old} for {new}")
        self._retag(volume, new, old)
        return volume

    def take_back(self, old: str, holder_state: str | None) -> dict[str, Any] | None:
        """Give ``old`` back the volume handed to its replacement (on restore).
        ``holder_state`` is the current holder's instance state (None: gone)."""
        volume = next((v for v in self.all()
                       if tags_of(v).get(TAG_VOLUME_PREVIOUS) == old), None)
        if volume is None or tags_of(volume).get(TAG_VOLUME_HOLDER) == old:
            return volume
        holder = tags_of(volume).get(TAG_VOLUME_HOLDER, "?")
        if holder_state is not None and holder_state not in ("stopped", *_GONE):
            raise DriverError(
                f"cannot give volume {volume['VolumeId']} back to {old}: {holder} holds it "
                f"and is {holder_state}",
                hint=f"stop or terminate {holder} first")
        self._detach(volume, f"from {holder} back to {old}")
        self._retag(volume, old, "")
        return volume

    def holder_of_previous(self, old: str) -> str | None:
        """Who holds the volume ``old`` handed over, if any."""
        volume = next((v for v in self.all()
                       if tags_of(v).get(TAG_VOLUME_PREVIOUS) == old), None)
        return tags_of(volume).get(TAG_VOLUME_HOLDER) if volume is not None else None
