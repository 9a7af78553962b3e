"""The seam between ``analysis: NAME`` canary steps and whatever judges them.

The controller calls its ``judge`` with the step's analysis name when the
canary reaches the step; the verdict's ``passed`` moves the canary on, a
failed verdict (or an error raised by the judge) fails the canary. The
default judge knows no analysis, so a pool that names one fails its canary
with a message saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rollout.errors import ConfigError


@dataclass(frozen=True)
class AnalysisVerdict:
    passed: bool
    reason: str = ""


Judge = Callable[[str], AnalysisVerdict]


def no_analysis(name: str) -> AnalysisVerdict:
    """The default judge: there are no analyses."""
    raise ConfigError(
        f"no analysis named {name!r} (canary_steps: analysis: {name})",
        hint="define the analysis, or remove the step from canary_steps",
    )
