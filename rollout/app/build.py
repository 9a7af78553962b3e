"""``rollout build``: bake an image of a role on the backend its pool runs on.

Everything is validated before the first side effect: the role, version and
extra vars (:func:`rollout.bake.request.check_request`), the parent image, and
what the builder itself needs (:meth:`rollout.protocols.Builder.check`). Then
the one bake pipeline (:mod:`rollout.bake.pipeline`) runs over the builder
:func:`builder_for` picks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from rollout import names
from rollout.app.workspace import Workspace
from rollout.bake.pipeline import bake, testinfra_gate
from rollout.bake.request import check_request, parse_extra_vars, smoke_settings
from rollout.clock import SystemClock
from rollout.model import Image
from rollout.protocols import Builder, Clock

Say = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


def _never() -> bool:
    return False


def extra_vars_of(items: Iterable[str]) -> dict[str, str]:
    """The CLI's ``--extra-var K=V`` values, checked by the bake's one validator."""
    return parse_extra_vars(items)


def builder_for(ws: Workspace, role: str, *, clock: Clock, on_event: Say) -> Builder:
    """The builder that bakes ``role`` in this environment, as the backend that
    serves the role hands it out (:meth:`Workspace.backend_of`)."""
    backend, pool = ws.backend_of(role)
    return backend.builder(pool, clock=clock, on_event=on_event)


def build_image(
    ws: Workspace,
    role: str,
    version: str,
    *,
    parent: str | None = None,
    extra_vars: Mapping[str, str] | None = None,
    smoke: bool = True,
    on_event: Say = _quiet,
    cancel: Callable[[], bool] = _never,
    clock: Clock | None = None,
) -> Image:
    """Bake and register an image of ``role`` at ``version`` (on top of the image
    ``parent`` when given); ``cancel`` is the stop flag (SIGINT/SIGTERM)."""
    clock = clock or SystemClock()
    names.name(role, "role", "--role")
    names.version(version, "--version")
    parent_image = ws.image_store(role).get(names.image_id(parent, "--parent")) if parent \
        else None
    settings = smoke_settings(ws.env, ws.project, role)
    request = check_request(ws.project, role, version, parent=parent_image,
                            extra_vars=extra_vars, smoke=smoke, bake=settings.bake,
                            vault=ws.vault, inventory=ws.env.path)
    builder = builder_for(ws, role, clock=clock, on_event=on_event)
    gate = testinfra_gate(
        ws.project, settings, builder.ssh,
        ws.data.evidence / request.image_id,
    ) if smoke else None
    return bake(builder, request, smoke=gate, log_dir=ws.data.logs, clock=clock,
                cancel=cancel, on_event=on_event)
