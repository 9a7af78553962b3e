"""``rollout promote IMAGE --to ENV``: record that a person promoted an image.

The promotion lands in the image's manifest in the image store that holds the
image (the data directory in the lab, the AMI's tags on AWS; see
:mod:`rollout.core.promotion` for the rule a pool applies before ``rollout run``).
"""

from __future__ import annotations

import getpass
import os
import time

from rollout import names
from rollout.app.workspace import Workspace
from rollout.core.promotion import record_promotion
from rollout.errors import NotFoundError
from rollout.model import Image


def who() -> str:
    """The person promoting: the sudo caller if any, else the login name."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def promote_image(ws: Workspace, image_id: str, env: str, *, by: str | None = None,
                  now: float | None = None) -> Image:
    """Record a promotion of ``image_id`` to ``env``; returns the updated image.

    ``env`` must be an environment of the project (``inventories/ENV``) or of
    the promotion order, so a typo cannot create a promotion nothing checks."""
    names.image_id(image_id, "IMAGE")
    names.name(env, "environment", "--to")
    inventories = {p.name for p in (ws.project / "inventories").iterdir() if p.is_dir()}
    known = sorted(inventories | set(ws.env.settings.promotion_order))
    if env not in known:
        raise NotFoundError(f"--to {env}: no such environment (known: {', '.join(known)})",
                            hint="promote to an inventories/ENV of the project or an "
                            "environment of rollout_env.promotion_order")
    store, image = ws.find_image(image_id)
    at = time.time() if now is None else now
    return store.update_manifest(image.id, lambda m: record_promotion(m, env, by or who(), at))
