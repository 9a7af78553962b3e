"""The settings schema: a pool's ``rollout`` key and an environment's
``rollout_env``, as typed, validated models, plus the :class:`Pool` and
:class:`Environment` they make up.

Pure: no file is read here (that is :mod:`rollout.inventory`), so the decision
core may import it. Each validation error names the file and key.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rollout import names
from rollout.config_analysis import Analysis, CloudWatchAnalysis
from rollout.config_bluegreen import BlueGreenSettings
from rollout.config_canary import CanaryStep
from rollout.config_post_rollout import PostRollout
from rollout.config_shadow import ShadowSettings
from rollout.durations import parse_duration, resolve_floor
from rollout.errors import ConfigError, NotFoundError
from rollout.hooks import HookSettings
from rollout.state_url import parse_state_url

Duration = Annotated[float, BeforeValidator(parse_duration)]
_M = TypeVar("_M", bound=BaseModel)


def _floor(value: object) -> int | str:
    if isinstance(value, bool):
        raise ValueError("expected a count such as 3 or a percentage such as '75%'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must be ≥ 0")
        return value
    if isinstance(value, str) and re.fullmatch(r"\d+(?:\.\d+)?%", value.strip()):
        percent = float(value.strip()[:-1])
        if percent > 100:
            raise ValueError("a percentage must be at most 100%")
        return value.strip()
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError("expected a count such as 3 or a percentage such as '75%'")


Floor = Annotated[int | str, BeforeValidator(_floor)]


def _name(value: object) -> str:
    if not isinstance(value, str) or not names._NAME.fullmatch(value):
        raise ValueError(
            "use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit"
        )
    return value


def _backend(value: object) -> str:
    if not isinstance(value, str) or not names._BACKEND.fullmatch(value):
        raise ValueError("use letters, digits, '.', '_' or '-' (no spaces, ';' or newlines)")
    return value


def _ssh_user(value: object) -> str:
    if not isinstance(value, str) or not names._SSH_USER.fullmatch(value):
        raise ValueError(names.SSH_USER_RULE)
    return value


def _ssh_path(value: object) -> str:
    # These go into a generated ssh_config and ssh's command line: a newline
    # would add a directive (ProxyCommand runs a program on the controller).
    if not isinstance(value, str) or not value or names._SSH_PATH_BAD.search(value):
        raise ValueError(names.SSH_PATH_RULE)
    return value


Name = Annotated[str, BeforeValidator(_name)]
BackendName = Annotated[str, BeforeValidator(_backend)]
SshUser = Annotated[str, BeforeValidator(_ssh_user)]
SshPath = Annotated[str, BeforeValidator(_ssh_path)]


class Strategy(StrEnum):
    """How a pool's nodes are replaced: the new node serves before the old one
    stops (surge), or the old node leaves first (in place)."""

    SURGE = "surge"
    IN_PLACE = "in_place"
    # A whole new pool beside the old one, all traffic switched at once, the
    # old pool kept warm for scale_down_delay (rollout.core.bluegreen).
    BLUE_GREEN = "blue_green"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Timeouts(_Strict):
    ready: Duration = Field(60.0, gt=0)
    smoke: Duration = Field(120.0, gt=0)
    lb_up: Duration = Field(30.0, gt=0)
    drain: Duration = Field(30.0, ge=0)
    progress_deadline: Duration = Field(1800.0, gt=0)
    # How long the pool may stay unobservable (the LB's API down, the
    # provider unreachable) before the rollout halts safely (exit 4; resume
    # converges once it answers again). Bounded by progress_deadline.
    observe: Duration = Field(120.0, gt=0)


class HttpCheck(_Strict):
    path: str = "/healthz"
    status: int = Field(200, ge=100, le=599)
    contains: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in " \r\n\t"):
            raise ValueError("must start with '/' and hold no spaces or newlines")
        return value


class SmokeSettings(_Strict):
    suite: str | None = None  # a directory relative to the project, e.g. smoke/web
    http_checks: tuple[HttpCheck, ...] = (HttpCheck(),)
    retries: int = Field(0, ge=0, le=5)


class HAProxySettings(_Strict):
    backend: BackendName
    frontend_port: int = Field(ge=1, le=65535)
    frontend_address: str = "127.0.0.1"
    slots: int = Field(16, ge=1, le=1000)
    slot_prefix: BackendName = "node"
    # tcp:// carries the admin API (which can repoint every server) unencrypted
    # and unauthenticated: only to this host unless this says otherwise.
    allow_remote_tcp: bool = False
    # The key and known_hosts file of an ssh:// runtime URL (else the user's).
    ssh_key: SshPath | None = None
    known_hosts: SshPath | None = None
    # unix:///path, tcp://host:port or ssh://user@host/path/to/socket.
    # Empty for the lab means the lab's own socket under the data directory.
    runtime: str = ""
    check_interval: Duration = Field(0.5, gt=0)
    rise: int = Field(2, ge=1)
    fall: int = Field(2, ge=1)
    # Retry a failed connection, and send the retry to another server
    # (redispatch), before the client sees an error.
    retries: int = Field(3, ge=0, le=10)
    redispatch: bool = True
    # blue_green.preview: the backend (same slots as ``backend``) and the port
    # of the preview frontend that serve the idle side. The lab renders both
    # (port unset: frontend_port + 3000); another HAProxy must declare them.
    preview_backend: BackendName | None = None
    preview_port: int | None = Field(None, ge=1, le=65535)

    @property
    def preview_frontend_port(self) -> int:
        """``preview_port``, or the lab's default: ``frontend_port`` + 3000
        (the lab's metrics take + 1000 and + 2000)."""
        return self.preview_port or self.frontend_port + 3000

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: str, info: ValidationInfo) -> str:
        if value and not re.fullmatch(r"(unix://|tcp://|ssh://)[^\s;]+", value):
            raise ValueError("must be unix:///path, tcp://host:port or ssh://user@host/path")
        host = names.remote_tcp_host(value)
        if host is not None and not info.data.get("allow_remote_tcp", False):
            raise ValueError(
                f"tcp:// to {host}, which is not this host, sends HAProxy's admin API "
                "unencrypted and unauthenticated; use ssh://user@host/path/to/socket, "
                "or set haproxy.allow_remote_tcp: true if the network is trusted"
            )
        return value


class AwsSettings(_Strict):
    region: str | None = None
    launch_template: str | None = None
    launch_template_version: str = "$Latest"
    instance_type: str | None = None
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    instance_profile: str | None = None
    key_name: str | None = None
    user_data: str | None = None
    auto_scaling_group: str | None = None
    target_group_arn: str | None = None
    base_ami: str | None = None
    ssh_user: SshUser = "admin"
    ssh_key: SshPath | None = None
    host_key_policy: Literal["verify", "accept-new", "ignore"] = "verify"
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = Field(5, ge=1, le=20)
    # Added for the AWS drivers (rollout.backends.aws, rollout.backends.aws.provider):
    ssh_address: Literal["private", "public"] = "private"  # which IP SSH and probes use
    # A known_hosts file (e.g. an @cert-authority line). Host keys are kept
    # under the instance id (HostKeyAlias), not the IP address: AWS reuses
    # private addresses, so a key pinned by IP would refuse the next instance.
    known_hosts: SshPath | None = None
    image_owners: tuple[str, ...] = ()  # other accounts whose AMIs the image store lists
    replace_protected: bool = True  # False: refuse to retire scale-in-protected instances
    builder_instance_type: str | None = None  # the bake's builder; default instance_type
    extra_tags: dict[str, str] = {}  # more tags on every node and AMI (cost centre...)
    # Data volumes (PoolSettings.volume): the EBS volume made for a fresh node.
    volume_size: int = Field(10, ge=1, le=16384)  # GiB
    volume_type: str = "gp3"
    volume_device: str = "/dev/xvdf"
    # Blue-green and weighted canary steps on ELBv2 (docs/AWS.md): the listener
    # whose default action forwards to target_group_arn or to this second
    # group; the two swap roles at every blue-green switch.
    listener_arn: str | None = None
    alternate_target_group_arn: str | None = None
    # blue_green.preview: a listener rule the user made, whose forward rollout
    # keeps on the idle group (green before the switch, warm blue after).
    preview_rule_arn: str | None = None


class BakeSettings(_Strict):
    """How playbooks/bake.yml runs for this pool's role."""

    # Published roles read facts (ansible_os_family...), so a bake gathers them
    # unless told not to; gather_subset limits them (e.g. ["min", "network"]).
    gather_facts: bool = True
    gather_subset: tuple[str, ...] = ()

    @field_validator("gather_subset")
    @classmethod
    def _subset(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not re.fullmatch(r"!?[a-z_]{1,40}", item):
                raise ValueError(f"{item!r} is not a fact subset such as 'min' or '!hardware'")
        return value


class NotifyOn(StrEnum):
    """What a ``notify:`` webhook is told about."""

    START = "start"
    SUCCESS = "success"
    FAILURE = "failure"
    RESTORE = "restore"
    PAUSE = "pause"  # halted or interrupted: the rollout waits for resume or abort


class Webhook(_Strict):
    """A Slack-compatible webhook (``{"text": ...}`` POSTed as JSON)."""

    url: str = Field(pattern=r"^https?://[^\s]+$")
    on: tuple[NotifyOn, ...] = tuple(NotifyOn)
    timeout: Duration = Field(5.0, gt=0, le=60)
    retries: int = Field(3, ge=0, le=10)


class PoolSettings(_Strict):
    """A pool is one role in one environment.

    ``provider`` names the pool's backend (see :mod:`rollout.backends`), which
    checks the settings it needs (``haproxy``, ``aws``) and the load balancers
    it can serve when the workspace opens; the schema only checks their shape."""

    provider: Name = "lab"
    load_balancer: Literal["haproxy", "elbv2"] = "haproxy"
    pool_size: int = Field(4, ge=1, le=10000)
    service_port: int = Field(80, ge=1, le=65535)
    health_path: str = "/healthz"
    strategy: Strategy = Strategy.SURGE
    batch_size: int = Field(1, ge=1)
    max_unavailable: int = Field(0, ge=0)
    min_healthy: Floor = "100%"
    canary: int = Field(1, ge=0)
    soak: Duration = Field(5.0, ge=0)
    failure_budget: int = Field(0, ge=0)
    # A new node that never becomes ready (or boots degraded) is destroyed and
    # another launched, this many times, before the replacement counts as failed.
    boot_retries: int = Field(1, ge=0, le=5)
    standby: Literal["running", "stopped"] = "running"
    # Regression thresholds compared during the soak, new nodes against old.
    max_5xx_rate: float = Field(0.01, ge=0, le=1)
    max_flaps: int = Field(0, ge=0)
    timeouts: Timeouts = Timeouts()
    smoke: SmokeSettings = SmokeSettings()
    bake: BakeSettings = BakeSettings()
    haproxy: HAProxySettings | None = None
    aws: AwsSettings | None = None
    # Promotion rule: the image must have been promoted to, or passed, this env.
    require_promotion_from: Name | None = None
    volume: str | None = None  # a path inside the node handed to its replacement
    # The pool lease's time to live: renewed every TTL/4, and a controller that
    # could not renew it for TTL minus a third of it stops before acting.
    lease_ttl: Duration = Field(30.0, ge=1.0, le=3600.0)
    # Webhooks told of the rollout's start and end (see rollout.app.notify).
    notify: tuple[Webhook, ...] = ()
    # --- lifecycle hooks (rollout.hooks, docs/HOOKS.md) ---
    # Playbooks run at points of the rollout; their files are checked to exist
    # inside the project by the loader (rollout.inventory).
    hooks: HookSettings = HookSettings()
    # --- analyses (issue 13; models in rollout.config_analysis) ---
    # Named measurements; ``analysis`` judges the canary soak by one of them
    # instead of the LB's 5xx rates.
    analyses: dict[Name, Analysis] = Field(default_factory=dict)
    analysis: Name | None = None
    # --- end of analyses ---
    # --- the dark-launch gate (rollout.config_shadow, rollout.core.shadow) ---
    # Recent requests replayed to a new node and an old one before it serves.
    shadow: ShadowSettings = ShadowSettings()
    # --- end of the dark-launch gate ---
    # --- post-rollout window (rollout.config_post_rollout, rollout.core.window) ---
    post_rollout: PostRollout = PostRollout()
    # --- blue-green (strategy blue_green; see rollout.core.bluegreen) ---------------
    # How long the old (blue) pool stays warm, drained and out of service, after
    # the switch: `rollout rollback` switches back to it at once until then.
    scale_down_delay: Duration = Field(30.0, ge=0)
    # The most machines the pool may have at once (a blue-green peak is twice
    # the pool); None: no cap besides the load balancer's.
    max_nodes: int | None = Field(None, ge=1)
    # Analyses before and after the switch (rollout.config_bluegreen).
    blue_green: BlueGreenSettings = BlueGreenSettings()
    # --- weighted canary steps and pause gates (rollout.config_canary) ---
    # When given, the canary batch goes through these steps instead of `soak`.
    canary_steps: tuple[CanaryStep, ...] = ()
    # --- end of the canary steps block ---

    @model_validator(mode="after")
    def _coherent(self) -> PoolSettings:
        if self.canary_steps and self.canary < 1:
            raise ValueError("canary_steps need a canary batch: set canary to 1 or more")
        for step in self.canary_steps:
            if step.analysis is not None and step.analysis not in self.analyses:
                known = ", ".join(sorted(self.analyses)) or "none is defined"
                raise ValueError(f"canary_steps: analysis {step.analysis!r} is not one of "
                                 f"rollout.analyses ({known})")
        for name in (*self.blue_green.names(), *self.post_rollout.analysis):
            if name not in self.analyses:
                known = ", ".join(sorted(self.analyses)) or "none is defined"
                where = "post_rollout" if name in self.post_rollout.analysis else "blue_green"
                raise ValueError(f"{where}: analysis {name!r} is not one of "
                                 f"rollout.analyses ({known})")
        for name, spec in self.analyses.items():
            if (isinstance(spec, CloudWatchAnalysis) and spec.region is None
                    and (self.aws is None or self.aws.region is None)):
                raise ValueError(f"analyses.{name}: a cloudwatch analysis needs a region: set "
                                 f"analyses.{name}.region or aws.region")
        if self.analysis is not None and self.analysis not in self.analyses:
            known = ", ".join(sorted(self.analyses)) or "none is defined"
            raise ValueError(f"analysis {self.analysis!r} is not one of rollout.analyses "
                             f"({known})")
        if self.batch_size > self.pool_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) is larger than pool_size ({self.pool_size})"
            )
        if self.strategy is Strategy.IN_PLACE and self.max_unavailable < self.batch_size:
            raise ValueError(
                f"strategy in_place takes batch_size ({self.batch_size}) nodes out at once, "
                f"but max_unavailable is {self.max_unavailable}; raise max_unavailable "
                "or use strategy surge"
            )
        if self.volume is not None:
            if not self.volume.startswith("/") or any(c in self.volume for c in " \r\n\t:,"):
                raise ValueError(
                    f"volume must be an absolute path inside the node without spaces, ':' "
                    f"or ',' (got {self.volume!r})"
                )
            if self.strategy is not Strategy.IN_PLACE:
                raise ValueError(
                    "a pool with a volume must use strategy in_place: the old node is stopped "
                    "before its volume moves to the new one, so the new node cannot serve "
                    "first; set strategy: in_place and max_unavailable >= batch_size"
                )
        floor = self.min_healthy
        absolute = self.min_healthy_nodes
        if absolute > self.pool_size:
            raise ValueError(
                f"min_healthy ({floor}) is more than pool_size ({self.pool_size})"
            )
        if self.strategy is Strategy.IN_PLACE and self.pool_size - self.batch_size < absolute:
            raise ValueError(
                f"strategy in_place with batch_size {self.batch_size} leaves "
                f"{self.pool_size - self.batch_size} of {self.pool_size} nodes in service, "
                f"below min_healthy ({floor}); lower min_healthy or use strategy surge"
            )
        if self.strategy is Strategy.BLUE_GREEN:
            _check_blue_green(self)
        _check_preview(self)
        if self.haproxy is not None and self.haproxy.slots < self.pool_size + self.batch_size:
            raise ValueError(
                f"haproxy.slots ({self.haproxy.slots}) must be at least pool_size + batch_size "
                f"({self.pool_size + self.batch_size}) so replacements have a free slot"
            )
        return self

    @property
    def min_healthy_nodes(self) -> int:
        """``min_healthy`` as a count of nodes. The floor the core keeps also
        counts ``max_unavailable``: see :func:`rollout.core.batches.floor`."""
        return resolve_floor(self.min_healthy, self.pool_size)

    def with_overrides(self, where: str = "command line", **overrides: Any) -> PoolSettings:
        """A copy with command-line overrides (None means not given), re-validated."""
        data = self.model_dump()
        timeouts = dict(data["timeouts"])
        weight = overrides.pop("canary_weight", None)
        if weight is not None:
            # `--canary-weight PCT [--soak D]`: one weight step, then one pause.
            soak = overrides.get("soak")
            data["canary_steps"] = [{"weight": weight},
                                    {"pause": data["soak"] if soak is None else soak}]
        for key, value in overrides.items():
            if value is None:
                continue
            if key in Timeouts.model_fields:
                timeouts[key] = value
            else:
                data[key] = value
        data["timeouts"] = timeouts
        return validate_model(PoolSettings, data, where, prefix="")


class LabSettings(_Strict):
    bridge: Name = "rollout0"
    subnet: str = "10.231.0.0/24"
    nat: bool = True
    # The HAProxy Prometheus exporter's and the lab Prometheus' ports (unset:
    # the first HAProxy pool's frontend_port + 1000 and + 2000).
    metrics_port: int | None = Field(None, ge=1, le=65535)
    prometheus_port: int | None = Field(None, ge=1, le=65535)

    @field_validator("bridge")
    @classmethod
    def _bridge(cls, value: str) -> str:
        if len(value) > 12:
            raise ValueError("an interface name must be at most 12 characters here")
        return value

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"not an IPv4 network such as 10.231.0.0/24: {exc}") from None
        if net.version != 4 or net.prefixlen > 28 or not net.is_private:
            raise ValueError("use a private IPv4 network of /28 or larger, e.g. 10.231.0.0/24")
        return value


class EnvSettings(_Strict):
    lab: LabSettings = LabSettings()
    promotion_order: tuple[Name, ...] = ()
    # Where the journal and the leases live: sqlite:///path (default: the data
    # directory's journal.sqlite) or postgresql://... shared by all controllers.
    # Keep passwords out of it: PGPASSFILE or the libpq environment supply them.
    state: str | None = Field(None, repr=False)

    @model_validator(mode="after")
    def _state_url(self) -> EnvSettings:
        # Checked here rather than on the field, so the error never echoes the
        # raw value (it may hold a password); parse_state_url masks it.
        if self.state is not None:
            try:
                parse_state_url(self.state)
            except ValueError as exc:
                raise ValueError(f"state: {exc}") from None
        return self


def _check_blue_green(s: PoolSettings) -> None:
    """Blue-green launches a whole second pool before anything leaves."""
    peak = 2 * s.pool_size
    if s.max_nodes is not None and peak > s.max_nodes:
        raise ValueError(
            f"strategy blue_green runs {peak} nodes at its peak (twice pool_size "
            f"{s.pool_size}), more than max_nodes {s.max_nodes}; raise max_nodes or use "
            "strategy surge"
        )
    if s.haproxy is not None and s.haproxy.slots < peak:
        raise ValueError(
            f"strategy blue_green needs haproxy.slots ≥ {peak} (twice pool_size "
            f"{s.pool_size}: the green pool joins beside the blue one), got {s.haproxy.slots}"
        )


def _check_preview(s: PoolSettings) -> None:
    """A HAProxy preview needs a backend of its own to fill (and a port that
    is no other frontend's)."""
    if not s.blue_green.preview or s.load_balancer != "haproxy" or s.haproxy is None:
        return
    hap = s.haproxy
    if hap.preview_backend is None:
        raise ValueError(
            "blue_green.preview needs haproxy.preview_backend: the HAProxy backend (with "
            f"the same {hap.slots} slots as {hap.backend!r}) that the preview frontend "
            "serves; set it, e.g. preview_backend: " + f"{hap.backend}_preview, or set "
            "blue_green.preview: false")
    if hap.preview_backend == hap.backend:
        raise ValueError(f"haproxy.preview_backend must not be the pool's backend "
                         f"{hap.backend!r}: the preview has server slots of its own")
    if hap.runtime and hap.preview_port is None:
        raise ValueError(
            "blue_green.preview on the HAProxy at haproxy.runtime needs haproxy.preview_port "
            "(the port its preview frontend listens on): set it")
    if hap.preview_frontend_port == hap.frontend_port:
        raise ValueError(f"haproxy.preview_port ({hap.preview_frontend_port}) must differ "
                         "from haproxy.frontend_port")


@dataclass(frozen=True)
class Pool:
    env: str
    role: str
    settings: PoolSettings
    source: Path  # the group_vars file the settings came from


@dataclass(frozen=True)
class Environment:
    name: str
    path: Path
    settings: EnvSettings
    pools: dict[str, Pool]
    inventory: Path
    groups: frozenset[str] = frozenset()  # every group of the inventory

    def pool(self, role: str) -> Pool:
        names.name(role, "role")
        try:
            return self.pools[role]
        except KeyError:
            known = ", ".join(sorted(self.pools)) or "none"
            raise NotFoundError(
                f"{self.inventory}: no pool for role {role!r} in environment {self.name!r} "
                f"(pools: {known})",
                hint=f"add a group {role!r} to the inventory and group_vars/{role}.yml "
                "with a 'rollout' key",
            ) from None


def _format_loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        parts.append(f"[{item}]" if isinstance(item, int) else str(item))
    return ".".join(parts).replace(".[", "[")


def validate_model(model: type[_M], data: object, where: str, prefix: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = _format_loc(prefix, tuple(err["loc"])) or prefix or "(top level)"
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            if err["type"] == "extra_forbidden":
                msg = "is not a known setting (check the spelling)"
            got = err.get("input")
            shown = f" (got {got!r})" if err["type"] != "missing" and not isinstance(
                got, dict) else ""
            lines.append(f"{where}: {key}: {msg}{shown}")
        raise ConfigError("\n".join(lines)) from None
