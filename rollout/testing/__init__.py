"""Test doubles and harnesses, public so users can test their own hooks and
drivers with them.

- :mod:`rollout.testing.fakes`: in-memory Provider, LoadBalancer, SmokeRunner,
  ImageStore and a FakeClock, plus :class:`FakeWorld` wiring them together.
- :mod:`rollout.testing.latency`: seeded lognormal latencies with stragglers
  and AWS-like throttling, for timing runs of the fakes (``pace``, ``boot``,
  ``drain``, ``durations``).
- :mod:`rollout.testing.fake_hooks`: a lifecycle hook runner that fails as told.
- :mod:`rollout.testing.fake_shadow`: a dark-launch gate replaying in a FakeWorld.
- :mod:`rollout.testing.builder`: an in-memory Builder and Ansible stand-in
  for the bake pipeline.
- :mod:`rollout.testing.loadgen`: a bounded HTTP load generator that counts
  failed requests and who answered.
- :mod:`rollout.testing.lab`: a harness that drives the real lab from tests
  and benchmarks.
"""

from rollout.testing.builder import FakeBuilder, FakePlaybook
from rollout.testing.fake_hooks import FakeHookRunner
from rollout.testing.fake_shadow import FakeShadow
from rollout.testing.fakes import (
    FakeClock,
    FakeImageStore,
    FakeLoadBalancer,
    FakeProvider,
    FakeSmokeRunner,
    FakeWorld,
    image,
    pool_settings,
)

__all__ = [
    "FakeBuilder",
    "FakeClock",
    "FakeHookRunner",
    "FakeImageStore",
    "FakeLoadBalancer",
    "FakePlaybook",
    "FakeProvider",
    "FakeShadow",
    "FakeSmokeRunner",
    "FakeWorld",
    "image",
    "pool_settings",
]
