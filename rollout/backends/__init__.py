"""The table of backends, and the one function that picks one.

A backend is a provider kind (``provider:`` in a pool's settings) that hands
out the drivers of a pool: see :class:`rollout.protocols.Backend`. Backends
register through the ``rollout.backends`` entry point group, the built-in ones
too (``pyproject.toml``), so a third-party backend is installed, not wired in:

========  ==========================================  =======================
name      class                                       load balancers served
========  ==========================================  =======================
``lab``   :class:`rollout.backends.lab.backend.LabBackend`  haproxy
``aws``   :class:`rollout.backends.aws.backend.AwsBackend`  elbv2
========  ==========================================  =======================

Nothing outside a backend compares provider names: callers ask
:func:`get_backend` for the pool's backend and call its methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from rollout.config import Environment, Pool, PoolSettings
from rollout.errors import ConfigError
from rollout.paths import DataDir
from rollout.protocols import Backend

GROUP = "rollout.backends"
#: The backend of a pool that does not name one, and of an environment's
#: images when its pools do not agree on one.
DEFAULT = str(PoolSettings.model_fields["provider"].default)


@dataclass(frozen=True)
class Site:
    """Where the drivers work: the project, the environment and the data
    directory of the command (what a backend is built with)."""

    project: Path
    env: Environment
    data: DataDir


def known() -> list[str]:
    """The registered backend names."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def get_backend(name: str, site: Site, *, where: str = "provider") -> Backend:
    """The backend registered as ``name``, built for ``site``. ``where`` names
    the file and key for the error when no backend has that name."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name not in found:
        raise ConfigError(
            f"{where}: unknown provider {name!r} (known backends: "
            f"{', '.join(sorted(found)) or 'none'})",
            hint=f"install the backend, or use one of the known ones (entry points "
            f"{GROUP})",
        )
    backend: Backend = found[name].load()(site)
    return backend


def backend_for(pool: Pool, site: Site) -> Backend:
    """The backend of ``pool`` (its ``provider:``)."""
    return get_backend(pool.settings.provider, site, where=f"{pool.source}: rollout.provider")


__all__ = ["DEFAULT", "GROUP", "Site", "backend_for", "get_backend", "known"]
