"""rollout: phoenix rollouts of immutable, Ansible-baked server images.

The library lives here; ``rollout.cli`` is a thin layer on top of it, so a test,
a Jenkins step or another program can drive a rollout without the CLI.
"""

__version__ = "0.1.0"
