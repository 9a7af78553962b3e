"""The application layer: every command, as a plain library function.

| module        | function(s)                                  | command                       |
|---------------|----------------------------------------------|-------------------------------|
| ``rollouts``  | :func:`~rollout.app.rollouts.run_rollout`,   | ``rollout run``, ``resume``,  |
|               | ``resume_rollout``, ``abort_rollout``,       | ``abort``, ``reap``           |
|               | ``reap_pool``                                |                               |
| ``plan``      | :func:`~rollout.app.plan.plan_rollout`       | ``rollout plan``              |
| ``phoenix``   | :func:`~rollout.app.phoenix.phoenix_run`     | ``rollout phoenix``           |
| ``replace``   | :func:`~rollout.app.replace.replace_node`    | ``rollout replace NODE``      |
| ``promote``   | :func:`~rollout.app.promote.promote_image`   | ``rollout promote IMAGE``     |
| ``build``     | :func:`~rollout.app.build.build_image`       | ``rollout build``             |
| ``history``   | ``pool_status``, ``rollout_history``,        | ``rollout status``,           |
|               | ``rollout_detail``                           | ``history``, ``show``         |
| ``lab``       | ``lab_up``, ``lab_down``, ...                | ``rollout lab ...``           |

Underneath: :mod:`~rollout.app.workspace` (the project, environment, data
directory and each pool's drivers, from its backend), :mod:`~rollout.app.session`
(the one way a command holds a pool: journal, lease, controller and the single
post-run path) and :mod:`~rollout.app.reports` with :mod:`~rollout.app.metrics`
(evidence, JUnit, Prometheus metrics).

Each decision is a pure function of the core (``rollout.core.plan.build_plan``,
``rollout.core.phoenix.select_for_phoenix``, ``rollout.core.replace.decide_replace``,
``rollout.core.batches.floor``); the functions here gather the world through
the drivers and act through the controller, so every replacement takes the same
safe path as ``rollout run``.
"""
