"""The AWS backend: EC2 (and Auto Scaling) nodes (:class:`AwsProvider`) in an
ELBv2 target group (:class:`Elbv2LoadBalancer`), AMIs found by their tags
(:class:`AwsImageStore`, which also keeps promotions and rollout evidence in
AMI tags: see docs/AWS.md), the testinfra smoke gate over the instances' SSH.

Blue-green and weighted canary steps use a second target group behind the
pool's listener (:mod:`rollout.backends.aws.listener`).

It serves ``load_balancer: elbv2`` only: an HAProxy backend knows its servers
by address, while an AWS node is known to the load balancer by its instance id.
"""

from __future__ import annotations

from collections.abc import Callable

from rollout.backends import Site
from rollout.backends.aws.builder import AwsBuilder
from rollout.backends.aws.elbv2 import Elbv2LoadBalancer
from rollout.backends.aws.images import AwsImageStore
from rollout.backends.aws.provider import AwsProvider
from rollout.config import AwsSettings, Pool, Strategy
from rollout.drivers.smoke import TestinfraSmokeRunner
from rollout.errors import ConfigError
from rollout.protocols import (
    Backend,
    Builder,
    Clock,
    ImageStore,
    LoadBalancer,
    Provider,
    SmokeRunner,
)

#: The load balancers this backend has a driver for.
LOAD_BALANCERS = ("elbv2",)


class AwsBackend(Backend):
    """``provider: aws``."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def validate(self, pool: Pool) -> None:
        self._aws(pool)
        settings = pool.settings
        if settings.load_balancer not in LOAD_BALANCERS:
            raise ConfigError(
                f"{pool.source}: rollout.load_balancer: provider aws cannot serve "
                f"{settings.load_balancer!r} (it serves: {', '.join(LOAD_BALANCERS)})",
                hint="use load_balancer: elbv2 with rollout.aws.target_group_arn",
            )
        if settings.shadow.enabled:
            raise ConfigError(
                f"{pool.source}: rollout.shadow: the dark-launch gate is not supported on "
                "aws yet (it replays requests recorded from HAProxy's log)",
                hint="set rollout.shadow.enabled: false for an aws pool")
        if not self._aws(pool).target_group_arn:
            raise ConfigError(
                f"{pool.source}: rollout.aws.target_group_arn: load_balancer is elbv2, so "
                "aws.target_group_arn is required",
                hint="copy the target group's ARN from the console or CLI")
        self._listener_keys(pool)

    def _listener_keys(self, pool: Pool) -> None:
        """Blue-green and canary weight steps need the listener and the second
        group; one without the other is a half-made pair (docs/AWS.md)."""
        aws, settings = self._aws(pool), pool.settings
        needs = []
        if settings.strategy is Strategy.BLUE_GREEN:
            needs.append("strategy blue_green")
        if any(step.weight is not None for step in settings.canary_steps):
            needs.append("canary weight steps")
        if aws.preview_rule_arn:
            # The preview forwards to the idle one of the two groups.
            needs.append("aws.preview_rule_arn is set")
        given = {"aws.listener_arn": aws.listener_arn,
                 "aws.alternate_target_group_arn": aws.alternate_target_group_arn}
        missing = [key for key, value in given.items() if not value]
        if missing and (needs or len(missing) == 1):
            other = ", ".join(k for k in given if k not in missing)
            why = " and ".join(needs) if needs else f"{other} is set"
            raise ConfigError(
                f"{pool.source}: rollout.{missing[0]}: {why}, so {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} required",
                hint="name the listener whose default action forwards to aws.target_group_arn, "
                "and a second target group of the same port and health check (docs/AWS.md)")
        if settings.blue_green.preview and not aws.preview_rule_arn:
            raise ConfigError(
                f"{pool.source}: rollout.aws.preview_rule_arn: blue_green.preview is on, so "
                "aws.preview_rule_arn is required (the listener rule that serves the preview)",
                hint="create a listener rule with the condition you want (a host header, a "
                "path) and name it here, or set blue_green.preview: false (docs/AWS.md)")
        if not missing and aws.alternate_target_group_arn == aws.target_group_arn:
            raise ConfigError(
                f"{pool.source}: rollout.aws.alternate_target_group_arn: it is "
                "aws.target_group_arn itself", hint="create a second target group")
        weights = [step.weight for step in settings.canary_steps if step.weight is not None]
        if any(w >= 50 for w in weights):
            # The group with the larger weight is the serving one (listener.py):
            # at half or more, the canary group would become it.
            raise ConfigError(
                f"{pool.source}: rollout.canary_steps: weight {max(weights):g} is 50 % or more; "
                "on ELBv2 a canary weight must stay below half the traffic",
                hint="use weight steps below 50 (the rollout's later batches give the new "
                "image the rest)")

    def _aws(self, pool: Pool) -> AwsSettings:
        if pool.settings.aws is None:
            raise ConfigError(f"{pool.source}: rollout: provider is aws, so the key 'aws' is "
                              "required", hint="add rollout.aws with region and "
                              "launch_template (see docs/AWS.md)")
        return pool.settings.aws

    def image_store(self, pool: Pool | None) -> ImageStore:
        if pool is None:
            raise ConfigError("the AWS image store needs a pool's aws settings (region, "
                              "image owners)", hint="name the role with --role")
        return AwsImageStore.from_settings(self._aws(pool))

    def provider(self, pool: Pool, images: ImageStore) -> Provider:
        store = images if isinstance(images, AwsImageStore) else None
        return AwsProvider.from_pool(pool, images=store)

    def load_balancer(self, pool: Pool) -> LoadBalancer:
        self.validate(pool)
        return Elbv2LoadBalancer.from_settings(
            self._aws(pool), preview=pool.settings.blue_green.preview,
            rise_timeout=pool.settings.timeouts.lb_up)

    def prometheus_url(self, pool: Pool) -> str | None:
        """None: an AWS pool's ``prometheus`` analyses name their ``address``."""
        return None

    def smoke_runner(self, pool: Pool, provider: Provider) -> SmokeRunner:
        return TestinfraSmokeRunner.for_pool(
            self.site.project, pool, provider.ssh,
            self.site.data.pool_evidence(pool.env, pool.role))

    def builder(self, pool: Pool | None, *, clock: Clock,
                on_event: Callable[[str], None]) -> Builder:
        """An EC2 instance from ``aws.base_ami`` (or the parent image's AMI)."""
        if pool is None:
            raise ConfigError("an AMI bake needs a pool's aws settings (region, base_ami, "
                              "subnet)", hint="add the role's pool to the inventory first")
        return AwsBuilder(self._aws(pool), clock=clock)
