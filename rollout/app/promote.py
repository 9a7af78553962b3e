"""``rollout promote IMAGE --to ENV``: record that a person promoted an image.

The promotion lands in the image's manifest in the image store (see
:mod:`rollout.core.promotion` for the rule a pool applies before ``rollout run``).
"""

from __future__ import annotations

import getpass
import os
import time
from typing import TYPE_CHECKING

from rollout import names
from rollout.core.promotion import record_promotion
from rollout.errors import ConfigError, NotFoundError
from rollout.model import Image

if TYPE_CHECKING:
    from rollout.app.workspace import Workspace


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
    store = ws.image_store()
    store.get(image_id)
    update = getattr(store, "update_manifest", None)
    if update is None:
        raise ConfigError(f"the image store {type(store).__name__} cannot record promotions")
    at = time.time() if now is None else now
    image: Image = update(image_id, lambda m: record_promotion(m, env, by or who(), at))
    return image
