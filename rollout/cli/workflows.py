"""Operator workflows: plan, phoenix, replace, promote (see rollout.workflows)."""
