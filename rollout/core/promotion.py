"""Promotion rules and the evidence kept in an image's manifest.

An image's manifest (``<data>/images/<id>/manifest.json`` in the lab) holds:

``passed_envs``
    environments where a rollout of the image passed its smoke gate;
``promoted_to``
    environments the image was promoted to with ``rollout promote IMAGE --to ENV``;
``evidence``
    one entry per passing rollout: ``{kind: smoke_pass, env, rollout_id, junit,
    smoke, at}`` (other stages add entries of other kinds);
``promotions``
    one entry per promotion: ``{env, by, at}``.

The rule a pool applies before ``rollout run`` accepts an image, when its
settings name ``require_promotion_from: PREV``:

    the image is accepted in ENV if ENV is in ``promoted_to``
    (a person promoted it) or PREV is in ``passed_envs`` (it passed there).

A pool without ``require_promotion_from`` accepts any image. The environment's
``promotion_order`` (``rollout_env.promotion_order`` in group_vars/all.yml), when
set, must list PREV before ENV, so a typo cannot quietly disable the gate.

Everything here is pure: functions take a manifest mapping and return a new
dict; the image store persists it atomically, e.g.
``store.update_manifest(image_id, lambda m: record_pass(m, ...))``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from rollout import names
from rollout.errors import ConfigError

SETTING = "rollout.require_promotion_from"
EVIDENCE_KIND = "smoke_pass"  # the store's evidence list holds entries of several kinds


def _image(manifest: Mapping[str, Any]) -> str:
    return str(manifest.get("id") or "(unknown image)")


def _env_list(manifest: Mapping[str, Any], key: str) -> list[str]:
    value = manifest.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"image {_image(manifest)}: manifest key {key!r} must be a list of environment "
            f"names (got {value!r})",
            hint="fix or remove that key in the image's manifest.json",
        )
    return list(value)


def passed_envs(manifest: Mapping[str, Any]) -> list[str]:
    """Environments where the image's smoke gate passed during a rollout."""
    return _env_list(manifest, "passed_envs")


def promoted_to(manifest: Mapping[str, Any]) -> list[str]:
    """Environments the image was explicitly promoted to."""
    return _env_list(manifest, "promoted_to")


def previous_env(env: str, promotion_order: Sequence[str]) -> str | None:
    """The environment before ``env`` in the order, or None (first, or absent)."""
    if env in promotion_order:
        index = list(promotion_order).index(env)
        return promotion_order[index - 1] if index > 0 else None
    return None


def check_promotion(
    image_manifest: Mapping[str, Any],
    env: str,
    *,
    require_promotion_from: str | None,
    promotion_order: Sequence[str] = (),
) -> None:
    """Raise ConfigError (exit 2) unless the pool in ``env`` may run the image.

    The rule is in the module docstring. The message names the image, the
    environment, what is missing and the command that fixes it.
    """
    if require_promotion_from is None:
        return
    image = _image(image_manifest)
    required = require_promotion_from
    if promotion_order:
        order = list(promotion_order)
        if required not in order:
            raise ConfigError(
                f"{SETTING}: {required!r} is not in the promotion order "
                f"({', '.join(order)}) of environment {env!r}",
                hint="name an environment listed in rollout_env.promotion_order",
            )
        if env in order and order.index(required) >= order.index(env):
            raise ConfigError(
                f"{SETTING}: {required!r} does not come before {env!r} in the promotion "
                f"order ({', '.join(order)})",
                hint=f"use an environment before {env!r}, e.g. {previous_env(env, order)!r}",
            )
    if env in promoted_to(image_manifest) or required in passed_envs(image_manifest):
        return
    passed = ", ".join(passed_envs(image_manifest)) or "none"
    raise ConfigError(
        f"image {image} may not be rolled out to {env!r}: the pool requires it to have "
        f"passed {required!r} (it passed: {passed}) or to be promoted to {env!r}",
        hint=f"roll it out to {required!r} first, or run `rollout promote {image} --to {env}`",
    )


def record_pass(
    manifest: Mapping[str, Any],
    env: str,
    rollout_id: str,
    junit_paths: Sequence[str],
    smoke_summary: Mapping[str, Any] | str,
    *,
    at: float,
) -> dict[str, Any]:
    """A copy of ``manifest`` recording that a rollout to ``env`` passed its gate.

    Recording the same ``(env, rollout_id)`` again replaces that evidence entry,
    so a resumed rollout does not leave duplicates.
    """
    names.name(env, "environment")
    result = copy.deepcopy(dict(manifest))
    envs = passed_envs(manifest)
    if env not in envs:
        envs.append(env)
    result["passed_envs"] = envs
    entry = {
        "kind": EVIDENCE_KIND,
        "env": env,
        "rollout_id": rollout_id,
        "junit": [str(p) for p in junit_paths],
        "smoke": copy.deepcopy(smoke_summary) if not isinstance(smoke_summary, str)
        else smoke_summary,
        "at": at,
    }
    evidence = [
        e for e in result.get("evidence", [])
        if not (isinstance(e, dict) and e.get("kind") == EVIDENCE_KIND and e.get("env") == env
                and e.get("rollout_id") == rollout_id)
    ]
    evidence.append(entry)
    result["evidence"] = evidence
    return result


def record_promotion(manifest: Mapping[str, Any], env: str, by: str, at: float) -> dict[str, Any]:
    """A copy of ``manifest`` recording that ``by`` promoted the image to ``env``."""
    names.name(env, "environment", "--to")
    if not by.strip():
        raise ConfigError("promote: say who promotes the image (got an empty name)")
    result = copy.deepcopy(dict(manifest))
    envs = promoted_to(manifest)
    if env not in envs:
        envs.append(env)
    result["promoted_to"] = envs
    result["promotions"] = [*result.get("promotions", []), {"env": env, "by": by, "at": at}]
    return result
