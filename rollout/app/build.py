"""``rollout build``: bake an image of a role and register it.

(Being reworked into one bake pipeline over a Builder protocol; moved here
unchanged from the old ``operations`` module.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from rollout import names
from rollout.app.workspace import Workspace
from rollout.model import Image


def build_image(ws: Workspace, role: str, version: str, *, parent: str | None = None,
                extra_vars: Mapping[str, str] | None = None, smoke: bool = True,
                on_event: Callable[[str], None] = lambda m: None,
                cancel: Callable[[], bool] = lambda: False) -> Image:
    """Bake ``role``: on the lab (a directory image) or, when the environment's
    pool of that role runs on AWS, an AMI. Validated before anything starts."""
    names.name(role, "role", "--role")
    names.version(version, "--version")
    pool = ws.env.pools.get(role)
    store = ws.image_store(role)
    parent_image = store.get(names.image_id(parent, "--parent")) if parent else None
    if pool is not None and pool.settings.provider == "aws":
        from rollout.backends.aws.bake import bake_ami
        from rollout.drivers.smoke import TestinfraSmokeRunner

        aws = pool.settings.aws
        assert aws is not None  # PoolSettings guarantees it for provider aws
        runner = None
        if smoke:
            from rollout.backends.aws.ec2 import ssh_target_for

            runner = TestinfraSmokeRunner(
                project=ws.project, pool_settings=pool.settings,
                ssh_for=lambda node: ssh_target_for(node, aws),
                evidence_dir=ws.data.evidence / "bakes", timeout=pool.settings.timeouts.smoke)
        return bake_ami(ws.project, aws, role, version, smoke=runner, log_dir=ws.data.logs,
                        parent=parent_image, extra_vars=extra_vars, cancel=cancel,
                        on_event=on_event)
    from rollout.backends.lab.bake import bake

    return bake(ws.project, ws.env, ws.data, role, version, parent=parent_image,
                extra_vars=extra_vars or {}, smoke=smoke, on_event=on_event)
