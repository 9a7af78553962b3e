"""The lab backend: nspawn nodes (:class:`LabProvider`) behind the lab's HAProxy
(:class:`HAProxyLoadBalancer`), images in the data directory
(:class:`LabImageStore`), the testinfra smoke gate over the nodes' SSH.

It serves ``load_balancer: haproxy`` only: an ELBv2 target group cannot reach
a node on the lab's host bridge.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rollout.backends import Site
from rollout.backends.lab.builder import LabBuilder
from rollout.backends.lab.images import LabImageStore
from rollout.backends.lab.prometheus import lab_metrics_ports
from rollout.backends.lab.provider import LabProvider
from rollout.backends.lab.records import LabContext
from rollout.config import Pool, Strategy
from rollout.drivers.haproxy.lb import HAProxyLoadBalancer
from rollout.drivers.haproxy.requestlog import RequestLog, captured, socket_path
from rollout.drivers.haproxy.runtime import HAProxyRuntime
from rollout.drivers.smoke import TestinfraSmokeRunner
from rollout.errors import ConfigError
from rollout.protocols import (
    Backend,
    Builder,
    Clock,
    ImageStore,
    LoadBalancer,
    Provider,
    RequestSource,
    SmokeRunner,
)

#: The load balancers this backend has a driver for.
LOAD_BALANCERS = ("haproxy",)


class LabBackend(Backend):
    """``provider: lab``."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def validate(self, pool: Pool) -> None:
        settings = pool.settings
        if settings.load_balancer not in LOAD_BALANCERS:
            raise ConfigError(
                f"{pool.source}: rollout.load_balancer: provider lab cannot serve "
                f"{settings.load_balancer!r} (it serves: {', '.join(LOAD_BALANCERS)})",
                hint="use load_balancer: haproxy with a rollout.haproxy key",
            )
        if settings.haproxy is None:
            raise ConfigError(
                f"{pool.source}: rollout: load_balancer is haproxy, so the key 'haproxy' "
                "is required", hint="add rollout.haproxy.backend and frontend_port")
        if settings.shadow.enabled and settings.haproxy.runtime:
            raise ConfigError(
                f"{pool.source}: rollout.shadow: the dark-launch gate reads the requests of "
                "the lab's own HAProxy, and this pool names another (haproxy.runtime)",
                hint="drop haproxy.runtime, or set rollout.shadow.enabled: false")
        if settings.shadow.enabled and settings.strategy is Strategy.BLUE_GREEN:
            raise ConfigError(
                f"{pool.source}: rollout.shadow: the dark-launch gate runs before a new "
                "node joins the LB, which strategy blue_green does not do yet",
                hint="use strategy surge or in_place, or set rollout.shadow.enabled: false")

    def image_store(self, pool: Pool | None) -> ImageStore:
        return LabImageStore(self.site.data)

    def provider(self, pool: Pool, images: ImageStore) -> Provider:
        return LabProvider(LabContext(self.site.data, self.site.env.settings.lab), pool, images)

    def load_balancer(self, pool: Pool) -> LoadBalancer:
        """The pool's HAProxy backend through its ``haproxy.runtime`` API, or the
        lab's own socket under the data directory when that is empty."""
        self.validate(pool)
        hap = pool.settings.haproxy
        assert hap is not None  # validate() refuses a pool without it
        url = hap.runtime or f"unix://{self.site.data.lab / 'haproxy.sock'}"
        runtime = HAProxyRuntime.from_url(
            url,
            ssh_key=os.path.expanduser(hap.ssh_key) if hap.ssh_key else None,
            known_hosts=os.path.expanduser(hap.known_hosts) if hap.known_hosts else None,
            allow_remote_tcp=hap.allow_remote_tcp,
        )
        return HAProxyLoadBalancer.for_pool(pool, runtime)

    def smoke_runner(self, pool: Pool, provider: Provider) -> SmokeRunner:
        return TestinfraSmokeRunner.for_pool(
            self.site.project, pool, provider.ssh,
            self.site.data.pool_evidence(pool.env, pool.role))

    def prometheus_url(self, pool: Pool) -> str | None:
        """The lab's own Prometheus (``lab up`` starts it)."""
        ports = lab_metrics_ports(self.site.env)
        return None if ports is None else ports.url

    def preview_url(self, pool: Pool) -> str | None:
        """The preview frontend the lab renders for ``blue_green.preview``."""
        hap = pool.settings.haproxy
        if not pool.settings.blue_green.preview or hap is None or hap.preview_backend is None:
            return None
        host = hap.frontend_address
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{hap.preview_frontend_port}"

    def request_source(self, pool: Pool) -> RequestSource | None:
        """The pool frontend's request log (rollout.drivers.haproxy.requestlog),
        bound under the lab's directory while a controller runs."""
        hap = pool.settings.haproxy
        if not pool.settings.shadow.enabled or hap is None:
            return None
        return RequestLog(socket_path(self.site.data.lab, hap.backend), f"fe_{hap.backend}",
                          captured(pool.settings.shadow.allow_headers))

    def builder(self, pool: Pool | None, *, clock: Clock,
                on_event: Callable[[str], None]) -> Builder:
        """A writable lab node booted from the base (or the parent image)."""
        return LabBuilder(self.site.env, self.site.data, clock=clock, on_event=on_event)
