"""The command line: a thin layer that packs options and calls the library.

Errors are mapped to exit codes in exactly one place, :func:`rollout.cli.main.main`.
"""

import rollout.cli.gates
import rollout.cli.images
import rollout.cli.lab
import rollout.cli.pools
import rollout.cli.rollouts
import rollout.cli.ui
import rollout.cli.watch
import rollout.cli.workflows  # noqa: F401  (each module registers its commands)
from rollout.cli.base import cli
from rollout.cli.main import main

__all__ = ["cli", "main"]
