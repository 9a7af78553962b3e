"""Operator workflows on top of the controller, as plain library functions.

| function                    | command                                  |
|-----------------------------|------------------------------------------|
| :func:`plan_rollout`        | ``rollout plan --role R [--version V]``  |
| :func:`phoenix_run`         | ``rollout phoenix --role R --max-age D`` |
| :func:`replace_node`        | ``rollout replace NODE [--force]``       |
| :func:`promote_image`       | ``rollout promote IMAGE --to ENV``       |

Each decision is a pure function tested on its own (``build_plan``,
``rollout.phoenix.select_for_phoenix``, ``decide_replace``); the functions
here gather the world through the drivers and act through the controller,
so every replacement takes the same safe path as ``rollout run``.
"""

from rollout.workflows.phoenix import PhoenixReport, phoenix_history, phoenix_run
from rollout.workflows.plan import PlanReport, build_plan, plan_for_session, plan_rollout
from rollout.workflows.promote import promote_image
from rollout.workflows.replace import (
    ReplaceReport,
    ReplaceVerdict,
    decide_replace,
    replace_node,
)

__all__ = [
    "PhoenixReport",
    "PlanReport",
    "ReplaceReport",
    "ReplaceVerdict",
    "build_plan",
    "decide_replace",
    "phoenix_history",
    "phoenix_run",
    "plan_for_session",
    "plan_rollout",
    "promote_image",
    "replace_node",
]
