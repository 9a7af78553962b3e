"""Where a command runs: the project, the environment, the data directory, and
the drivers of a pool, resolved from the inventory and the driver entry points.

Building a Workspace validates everything and touches nothing; drivers are
created only when a command asks for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollout.config import Environment, Pool
from rollout.errors import ConfigError
from rollout.inventory import load_environment, project_root
from rollout.model import VaultOptions
from rollout.paths import DataDir, default_data_dir

if TYPE_CHECKING:
    from rollout.protocols import ImageStore, LoadBalancer, Provider, SmokeRunner


def _load_driver(group: str, name: str, where: str) -> Any:
    found = {ep.name: ep for ep in entry_points(group=group)}
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise ConfigError(f"{where}: unknown driver {name!r} (known {group}: {known})")
    return found[name].load()


@dataclass(frozen=True)
class PoolDrivers:
    pool: Pool
    provider: Provider
    lb: LoadBalancer
    smoke: SmokeRunner
    images: ImageStore


@dataclass(frozen=True)
class Workspace:
    project: Path
    env: Environment
    data: DataDir
    vault: VaultOptions = field(default_factory=VaultOptions)

    @classmethod
    def open(cls, project: Path | None, env: str, data_dir: Path | None,
             vault: VaultOptions | None = None) -> Workspace:
        """The workspace of ``env``; ``vault`` says where the vault passwords
        are, for reading the inventory and for bakes."""
        root = project.resolve() if project else project_root()
        if project and not (root / "inventories").is_dir():
            raise ConfigError(f"{root}: --project has no inventories/ directory")
        vault = vault or VaultOptions()
        environment = load_environment(root, env, vault)
        return cls(project=root, env=environment, data=DataDir(data_dir or default_data_dir()),
                   vault=vault)

    def pool(self, role: str) -> Pool:
        return self.env.pool(role)

    def image_store(self, role: str | None = None) -> ImageStore:
        """Where the images of ``role`` live in this environment: AMI tags when
        its pool runs on AWS, the data directory otherwise. Without a role: AWS
        when every pool of the environment runs there."""
        pools = self.env.pools
        pool: Pool | None = pools.get(role) if role is not None else None
        if role is None and pools and all(p.settings.provider == "aws" for p in pools.values()):
            pool = pools[min(pools)]
        if pool is not None and pool.settings.provider == "aws":
            from rollout.backends.aws.images import AwsImageStore

            assert pool.settings.aws is not None  # PoolSettings requires it for aws
            return AwsImageStore.from_settings(pool.settings.aws)
        from rollout.backends.lab.images import LabImageStore

        return LabImageStore(self.data)

    def drivers(self, role: str) -> PoolDrivers:
        """The provider, load balancer, smoke runner and image store of a pool."""
        pool = self.pool(role)
        where = str(pool.source)
        provider_cls = _load_driver("rollout.providers", pool.settings.provider, where)
        lb_cls = _load_driver("rollout.load_balancers", pool.settings.load_balancer, where)
        images = self.image_store(role)
        provider = provider_cls.from_workspace(self, pool, images)
        lb = lb_cls.from_workspace(self, pool)
        from rollout.drivers.smoke import TestinfraSmokeRunner

        smoke = TestinfraSmokeRunner(
            project=self.project,
            pool_settings=pool.settings,
            ssh_for=provider.ssh,
            evidence_dir=self.data.evidence / pool.env / pool.role,
            timeout=pool.settings.timeouts.smoke,
        )
        return PoolDrivers(pool=pool, provider=provider, lb=lb, smoke=smoke, images=images)
