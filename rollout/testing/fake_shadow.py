"""A fake dark-launch gate: replays recorded requests to nodes of a
:class:`~rollout.testing.fakes.FakeWorld`, where old nodes answer 200 and a
new node answers 404 on the ``broken`` paths, and judges them with the real
comparison (:mod:`rollout.core.shadow`).

    shadow = FakeShadow(world, settings.shadow, [Request("GET", "/catalog")] * 10,
                        broken={"/catalog"})
    ...
    shadow.replays  # [(target, whether the new node was an LB member then), ...]
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from rollout.config_shadow import ShadowSettings
from rollout.core.shadow import (
    Request,
    Response,
    ShadowTarget,
    ShadowVerdict,
    judge,
    replayable,
    too_few,
)
from rollout.protocols import ShadowReplayer
from rollout.testing.fakes import FakeWorld


class FakeShadow(ShadowReplayer):
    """Replays ``recorded`` in the fake world; nothing is sent anywhere."""

    def __init__(self, world: FakeWorld, settings: ShadowSettings,
                 recorded: Sequence[Request], broken: Collection[str] = ()) -> None:
        self.world = world
        self.settings = settings
        self.recorded = list(recorded)
        self.broken = set(broken)
        self.replays: list[tuple[ShadowTarget, bool]] = []

    def replay(self, target: ShadowTarget) -> ShadowVerdict:
        addresses = {n.address: n for n in self.world.provider.live()}
        new = addresses.get(target.new_address)
        members = {m.target for m in self.world.lb.members() if m.target}
        self.replays.append((target, new is not None and new.lb_target in members))
        pool = replayable(self.recorded, self.settings)
        if len(pool) < self.settings.min_requests:
            return too_few(len(pool), self.settings)
        pairs = []
        for req in pool[: self.settings.sample]:
            status = 404 if req.path in self.broken else 200
            pairs.append((req, Response(200, 0.01, "body"), Response(status, 0.01, "body")))
        return judge(len(pool), pairs, self.settings)


__all__ = ["FakeShadow"]
