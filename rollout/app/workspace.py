"""Where a command runs: the project, the environment, the data directory, and
the drivers of a pool, handed out by the pool's backend (:mod:`rollout.backends`).

Opening a Workspace validates everything (the inventory, and each pool against
its backend) and touches nothing; drivers are created only when a command asks
for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from rollout.backends import DEFAULT, Site, backend_for, get_backend
from rollout.clock import SystemClock
from rollout.config import Environment, Pool
from rollout.drivers.analysis import Analyses
from rollout.drivers.shadow import ShadowReplay
from rollout.errors import ConfigError, NotFoundError
from rollout.inventory import load_environment, project_root
from rollout.model import Image, VaultOptions
from rollout.paths import DataDir
from rollout.paths import default_data_dir as default_data_dir
from rollout.protocols import (
    Analyzer,
    Backend,
    ImageStore,
    LoadBalancer,
    Provider,
    RequestSource,
    ShadowReplayer,
    SmokeRunner,
)


@dataclass(frozen=True)
class PoolDrivers:
    """Everything a controller drives for one pool."""

    pool: Pool
    provider: Provider
    lb: LoadBalancer
    smoke: SmokeRunner
    images: ImageStore
    analyzer: Analyzer | None = None
    #: The dark-launch gate (rollout.shadow) and where its requests come from;
    #: the session keeps ``requests`` open while it holds the pool's lease.
    requests: RequestSource | None = None
    shadow: ShadowReplayer | None = None


@dataclass(frozen=True)
class Workspace:
    project: Path
    env: Environment
    data: DataDir
    vault: VaultOptions = field(default_factory=VaultOptions)
    #: The state store named on the command line (``--state URL``), if any; it
    #: wins over ``ROLLOUT_STATE_URL`` and the inventory (see
    #: :func:`rollout.app.session.state_url`). Never shown: it may hold a password.
    state: str | None = field(default=None, repr=False)

    @classmethod
    def open(cls, project: Path | None, env: str, data_dir: Path | None,
             vault: VaultOptions | None = None, state: str | None = None) -> Workspace:
        """Read and validate ``inventories/ENV`` of the project (found upwards
        from the working directory without ``project``); nothing is touched.
        ``vault`` says where the vault passwords are, for reading the inventory
        and for bakes."""
        root = project.resolve() if project else project_root()
        if project and not (root / "inventories").is_dir():
            raise ConfigError(f"{root}: --project has no inventories/ directory")
        vault = vault or VaultOptions()
        environment = load_environment(root, env, vault)
        ws = cls(project=root, env=environment, data=DataDir(data_dir or default_data_dir()),
                 vault=vault, state=state)
        for pool in environment.pools.values():
            ws.backend(pool).validate(pool)
        return ws

    @property
    def site(self) -> Site:
        return Site(self.project, self.env, self.data)

    def backend(self, pool: Pool) -> Backend:
        """The backend that serves ``pool`` (its ``provider:``)."""
        return backend_for(pool, self.site)

    def pool(self, role: str) -> Pool:
        return self.env.pool(role)

    def with_pool(self, pool: Pool) -> Workspace:
        """This workspace with ``pool`` in place of the pool of its role (for
        command-line overrides of its settings)."""
        pools = {**self.env.pools, pool.role: pool}
        return replace(self, env=replace(self.env, pools=pools))

    def backend_of(self, role: str | None) -> tuple[Backend, Pool | None]:
        """The backend that serves ``role`` here, with its pool: the pool's
        backend. Without a role, or for a role without a pool here (a bake of a
        role not deployed yet): the backend every pool shares, with its first
        pool, else the default backend without a pool."""
        if role is not None and role in self.env.pools:
            pool = self.env.pools[role]
            return self.backend(pool), pool
        pools = sorted(self.env.pools.values(), key=lambda p: p.role)
        if pools and len({p.settings.provider for p in pools}) == 1:
            return self.backend(pools[0]), pools[0]
        return get_backend(DEFAULT, self.site), None

    def image_store(self, role: str | None = None) -> ImageStore:
        """Where the images of ``role`` live in this environment (see
        :meth:`backend_of`)."""
        backend, pool = self.backend_of(role)
        return backend.image_store(pool)

    def find_image(self, image_id: str) -> tuple[ImageStore, Image]:
        """The image called ``image_id`` and the store of this environment that
        holds it (each pool's store is asked in turn, then the default one)."""
        pools = sorted(self.env.pools.values(), key=lambda p: p.role)
        stores = [self.backend(p).image_store(p) for p in pools]
        if not pools or len({p.settings.provider for p in pools}) > 1:
            stores.append(get_backend(DEFAULT, self.site).image_store(None))
        missing: NotFoundError | None = None
        for store in stores:
            try:
                return store, store.get(image_id)
            except NotFoundError as exc:
                missing = missing or exc
        assert missing is not None  # there is at least one store
        raise missing

    def drivers(self, role: str) -> PoolDrivers:
        """The provider, load balancer, smoke runner and image store of a pool,
        as its backend hands them out."""
        pool = self.pool(role)
        backend = self.backend(pool)
        images = backend.image_store(pool)
        provider = backend.provider(pool, images)
        lb = backend.load_balancer(pool)
        analyzer = Analyses(pool.settings.analyses, lb, SystemClock(),
                            prometheus=backend.prometheus_url(pool),
                            where=f"{pool.source}: rollout.analyses",
                            region=pool.settings.aws.region if pool.settings.aws else None,
                            preview=backend.preview_url(pool))
        source = backend.request_source(pool)
        return PoolDrivers(pool=pool, provider=provider, lb=lb,
                           smoke=backend.smoke_runner(pool, provider), images=images,
                           analyzer=analyzer, requests=source,
                           shadow=None if source is None else ShadowReplay(
                               pool.settings.shadow, source))


__all__ = ["PoolDrivers", "Workspace", "default_data_dir"]
