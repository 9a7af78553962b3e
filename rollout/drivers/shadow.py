"""The dark-launch gate's replay: a sample of the pool's recorded requests
sent to the new node and to an old one, directly at their addresses and the
service port (never through the LB, so no user is involved), and the answers
handed to :mod:`rollout.core.shadow` to judge.

Each request goes to the old node first, then to the new one, one at a time,
so that the two answer under the same load. The recorded ``Host`` header is
sent as recorded; credentials were stripped by the sampling unless the pool
allows them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

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
from rollout.protocols import RequestSource, ShadowReplayer

#: Sent with every replay, so a node's logs can tell a replay from a user.
MARK = ("X-Rollout-Shadow", "1")


def _send(session: requests.Session, address: str, port: int, req: Request,
          timeout: float, timer: Callable[[], float]) -> Response:
    host = f"[{address}]" if ":" in address else address
    url = f"http://{host}:{port}{req.target}"
    started = timer()
    try:
        answer = session.request(req.method, url, headers=dict((*req.headers, MARK)),
                                 timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return Response(None, timer() - started, error=type(exc).__name__)
    latency = timer() - started
    return Response(answer.status_code, latency, hashlib.sha256(answer.content).hexdigest())


@dataclass
class ShadowReplay(ShadowReplayer):
    """The gate of one pool: its settings and where its requests are recorded."""

    settings: ShadowSettings
    source: RequestSource
    timer: Callable[[], float] = field(default=time.monotonic)

    def replay(self, target: ShadowTarget) -> ShadowVerdict:
        pool = replayable(self.source.recent(), self.settings)
        if len(pool) < self.settings.min_requests:
            return too_few(len(pool), self.settings)
        pairs = []
        with requests.Session() as session:
            session.trust_env = False  # never through a proxy from the environment
            for req in pool[: self.settings.sample]:
                old = _send(session, target.old_address, target.port, req,
                            self.settings.timeout, self.timer)
                new = _send(session, target.new_address, target.port, req,
                            self.settings.timeout, self.timer)
                pairs.append((req, old, new))
        return judge(len(pool), pairs, self.settings)


__all__ = ["MARK", "ShadowReplay"]
