"""`rollout build` and `rollout images`."""

from __future__ import annotations

import time
from typing import Any

import click

from rollout import names
from rollout.app import build as building
from rollout.cli.base import STOP, Options, cli, common, pass_options
from rollout.cli.live import bake_progress


@cli.command()
@click.option("--role", required=True, help="The role to bake (roles/ROLE).")
@click.option("--version", "version", default=None, help="Image version. [a timestamp]")
@click.option("--parent", default=None, help="Bake on top of this image id.")
@click.option("--extra-var", "extra_vars", multiple=True, metavar="K=V",
              help="An Ansible extra variable (repeatable).")
@click.option("--no-smoke", is_flag=True, help="Skip the smoke gate: the image is unverified.")
@common
@pass_options
def build(opts: Options, role: str, version: str | None, parent: str | None,
          extra_vars: tuple[str, ...], no_smoke: bool) -> None:
    """Bake an image of ROLE with Ansible, smoke-test it and register it."""
    version = version or time.strftime("%Y%m%d.%H%M%S", time.gmtime())
    variables = building.extra_vars_of(extra_vars)
    out = opts.out()
    # SIGINT and SIGTERM (Jenkins' abort, systemd's stop) end the bake between
    # steps, with the builder removed; a second one stops at once, also cleaning up.
    STOP.install()
    with bake_progress(out, enabled=opts.progress) as line:
        image = building.build_image(opts.workspace(), role, version, parent=parent,
                                     extra_vars=variables, smoke=not no_smoke, on_event=line,
                                     cancel=STOP.requested)
    if out.json:
        out.record({"event": "image_registered", "id": image.id, "role": image.role,
                    "version": image.version, "verified": image.verified,
                    "location": image.location})
    else:
        out.line(f"registered image {image.id} ({image.role} {image.version}"
                 f"{'' if image.verified else ', UNVERIFIED: baked with --no-smoke'})")


@cli.command()
@click.option("--role", default=None, help="Only this role.")
@common
@pass_options
def images(opts: Options, role: str | None) -> None:
    """List registered images."""
    if role is not None:
        names.name(role, "role", "--role")
    found = opts.workspace().image_store(role).list(role)
    out = opts.out()
    rows = [_image_json(i) for i in found]
    if out.json:
        out.document(rows)
        return
    out.table("images", ["id", "role", "version", "created", "verified", "passed in",
                         "promoted to"],
              [[r["id"], r["role"], r["version"], r["created"], str(r["verified"]),
                ",".join(r["passed_envs"]) or "-", ",".join(r["promoted_to"]) or "-"]
               for r in rows])


def _image_json(image: Any) -> dict[str, Any]:
    manifest = image.manifest or {}
    return {
        "id": image.id,
        "role": image.role,
        "version": image.version,
        "parent": image.parent,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(image.created_at)),
        "verified": image.verified,
        "location": image.location,
        "passed_envs": sorted(manifest.get("passed_envs", [])),
        "promoted_to": sorted(manifest.get("promoted_to", [])),
    }


