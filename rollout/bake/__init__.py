"""Baking images: one pipeline for every backend.

- :mod:`rollout.bake.request`: what a bake may be asked (role, version, extra
  vars), checked once for the CLI and every builder.
- :mod:`rollout.bake.manifest`: the one manifest schema and its helpers (image
  ids, role checksums, reading a manifest file).
- :mod:`rollout.bake.pipeline`: validate, start the builder, playbook, smoke
  gate, capture, register, and discard in ``finally``, over a
  :class:`rollout.protocols.Builder` (the lab's in
  :mod:`rollout.backends.lab.builder`, AWS's in :mod:`rollout.backends.aws.builder`).
"""
