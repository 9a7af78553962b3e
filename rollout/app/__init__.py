"""The application layer: every command, as a plain library function.

| function                    | command                                  |
|-----------------------------|------------------------------------------|
| :func:`plan_rollout`        | ``rollout plan --role R [--version V]``  |
| :func:`phoenix_run`         | ``rollout phoenix --role R --max-age D`` |
| :func:`replace_node`        | ``rollout replace NODE [--force]``       |
| :func:`promote_image`       | ``rollout promote IMAGE --to ENV``       |

Each decision is a pure function tested on its own (``build_plan``,
``rollout.core.phoenix.select_for_phoenix``, ``decide_replace``); the functions
here gather the world through the drivers and act through the controller,
so every replacement takes the same safe path as ``rollout run``.
"""
